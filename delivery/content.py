"""Message content as sent: the bytes after DATA for one recipient (tracking applied, line
endings made CRLF, DKIM signatures in front), and the sender address that signs the message and
takes its bounces.
"""

import logging
import re
from functools import lru_cache

from core.mime import first_address
from delivery.claims import DATABASE_UNAVAILABLE
from domains.signing import signature_for
from messages.models import OutboundMessage
from tracking.rewrite import apply_tracking

log = logging.getLogger(__name__)


def tracked(message: OutboundMessage) -> bool:
    """Tracked messages differ per recipient, so each recipient gets a transaction of its own."""
    return message.track_opens or message.track_links != "None"


_BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def crlf(content: bytes) -> bytes:
    """``content`` with every line ending CRLF, as SMTP requires (RFC 5321 §2.3.8): a bare LF
    or CR in the stored message would otherwise be relayed as it came (and a bare line end
    before a dot is how messages are smuggled past the next hop)."""
    return _BARE_LINE_END.sub(b"\r\n", content) if _BARE_LINE_END.search(content) else content


def sender_address(message: OutboundMessage) -> str:
    """The From address (addr-spec) whose domain signs the message and takes its bounces."""
    return _addr_spec(message.from_address)


@lru_cache(maxsize=1024)
def _addr_spec(from_header: str) -> str:
    # Parsing the header costs more than the cached key look-up; senders repeat themselves.
    return first_address(from_header) or from_header


def unsigned_bytes(message: OutboundMessage, recipient: str | None) -> bytes:
    """The message for ``recipient``: tracking applied, then line endings made CRLF."""
    return crlf(apply_tracking(message, recipient))


def message_bytes(message: OutboundMessage, recipient: str | None) -> bytes:
    """The bytes sent after DATA: ``unsigned_bytes`` with DKIM signatures in front, computed
    over exactly those bytes (``domains.signing``: the From domain's keys or the service's).
    A key that cannot sign is logged and the message goes unsigned rather than not at all."""
    content = unsigned_bytes(message, recipient)
    try:
        signature = signature_for(sender_address(message), content)
    except DATABASE_UNAVAILABLE:
        raise
    except Exception:
        log.exception("DKIM signature not added to message %s", message.message_id)
        signature = b""
    return signature + content
