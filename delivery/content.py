"""Message content as sent: the bytes after DATA for one recipient (tracking applied, line
endings made CRLF, DKIM signatures in front), the sender address that signs the message, and each
recipient's return path (``bounces.verp``: its own per recipient, under the sender's verified
Return-Path domain or BOUNCE_DOMAIN).
"""

import logging
import re
from functools import lru_cache

from bounces.verp import verp_address
from core.db import is_database_unavailable
from core.mime import first_address
from domains.signing import return_path_domain_for, signature_for
from messages.models import OutboundMessage, Recipient
from tracking.rewrite import apply_tracking

log = logging.getLogger(__name__)


def tracked(message: OutboundMessage) -> bool:
    """Tracked messages differ per recipient: their content is made (and signed) per recipient."""
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
    except Exception as exc:
        if is_database_unavailable(exc):
            raise
        log.exception("DKIM signature not added to message %s", message.message_id)
        signature = b""
    return signature + content


class Copies:
    """What each recipient of one message is sent: its return path and its content. Content
    that is the same for everyone (an untracked message) is made and signed once, for every
    recipient's transaction; a tracked message's, per recipient."""

    def __init__(self, message: OutboundMessage):
        self.message = message
        self._shared: bytes | None = None
        self._return_path_domain = ""

    def return_path(self, recipient: Recipient) -> str:
        """The recipient's own return path: whatever comes back to it is about this recipient
        of this message, and nobody else."""
        if not self._return_path_domain:
            self._return_path_domain = return_path_domain_for(sender_address(self.message))
        return verp_address(str(self.message.message_id), self._return_path_domain, recipient.pk)

    def content(self, recipient: Recipient) -> bytes:
        if tracked(self.message):
            return message_bytes(self.message, recipient.email)
        if self._shared is None:
            self._shared = message_bytes(self.message, None)
        return self._shared
