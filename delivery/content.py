"""Message content as sent: the bytes after DATA for one recipient (tracking applied, line
endings made CRLF, DKIM signatures in front); the sender that signs the message and takes its
bounces: the From rule's reading of the message's own From field (``domains.from_rule``), the one
processing checked; and each recipient's return path (``bounces.verp``: its own per recipient,
under the sender's verified Return-Path domain or BOUNCE_DOMAIN).
"""

import logging
import re

from bounces.verp import verp_address
from core.mime import split_message
from delivery.claims import DATABASE_UNAVAILABLE
from domains.from_rule import Sender, read_from
from domains.signing import return_path_domain_for, signature_for
from messages.models import OutboundMessage, Recipient
from messages.system import is_system_sender
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


# The sender of each message lately sent by this process, by MessageID (a message is sent in
# one transaction per recipient group; its content never changes).
_senders: dict = {}
MAX_REMEMBERED = 4096


def sender_of(message: OutboundMessage) -> Sender | None:
    """The From mailbox of the message as stored (what readers see), None when the From rule
    refuses it (a message processed by an older, laxer rule)."""
    key = message.message_id
    if key in _senders:
        return _senders[key]
    header_block, _, _ = split_message(bytes(message.content))
    sender = read_from(header_block)
    sender = sender if isinstance(sender, Sender) else None
    if len(_senders) >= MAX_REMEMBERED:
        _senders.clear()
    _senders[key] = sender
    return sender


def sender_address(message: OutboundMessage) -> str:
    """The From address whose domain signs the message and takes its bounces ('' when the From
    rule cannot read it: the return path is then under BOUNCE_DOMAIN)."""
    sender = sender_of(message)
    return sender.address if sender else ""


def unsigned_bytes(message: OutboundMessage, recipient: str | None) -> bytes:
    """The message for ``recipient``: tracking applied, then line endings made CRLF."""
    return crlf(apply_tracking(message, recipient))


def message_bytes(message: OutboundMessage, recipient: str | None) -> bytes:
    """The bytes sent after DATA: ``unsigned_bytes`` with DKIM signatures in front, computed
    over exactly those bytes (``domains.signing``: the From domain's keys or the service's).
    A key that cannot sign is logged and the message goes unsigned rather than not at all."""
    content = unsigned_bytes(message, recipient)
    try:
        sender = sender_of(message)
        system = sender is not None and is_system_sender(message.server, sender.address)
        signature = signature_for(sender, content, system=system)
    except DATABASE_UNAVAILABLE:
        raise
    except Exception:
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
