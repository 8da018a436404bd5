"""Message content as sent: the bytes after DATA for one recipient (tracking applied, line
endings made CRLF, DKIM signatures in front); the sender that signs the message and takes its
bounces: the From rule's reading of the message's own From field (``domains.from_rule``), the one
processing checked; and each recipient's return path (``bounces.verp``: its own per recipient,
under the sender's verified Return-Path domain or BOUNCE_DOMAIN). For a next hop that does not
offer 8BITMIME, 8-bit content is converted to 7-bit first (``delivery.downgrade``) and signed after
the conversion, so that the signature covers the bytes sent.
"""

import logging
import re

from bounces.verp import verp_address
from core.db import is_database_unavailable
from core.mime import split_message
from delivery.downgrade import Unconvertible, is_8bit, seven_bit
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
    return signed(message, unsigned_bytes(message, recipient))


def seven_bit_bytes(message: OutboundMessage, recipient: str | None, utf8_headers: bool) -> bytes:
    """``message_bytes`` for a next hop without 8BITMIME: the 8-bit body parts converted to
    quoted-printable, then signed. ``utf8_headers``: it offers SMTPUTF8, so UTF-8 header fields
    may stay. Unconvertible (with the reason) when the message cannot be converted."""
    return signed(message, seven_bit(unsigned_bytes(message, recipient), utf8_headers))


def signed(message: OutboundMessage, content: bytes) -> bytes:
    try:
        sender = sender_of(message)
        system = sender is not None and is_system_sender(message.server, sender.address)
        signature = signature_for(sender, content, system=system)
    except Exception as exc:
        if is_database_unavailable(exc):
            raise
        log.exception("DKIM signature not added to message %s", message.message_id)
        signature = b""
    return signature + content


class Copies:
    """What each recipient of one message is sent: its return path and its content. Content
    that is the same for everyone (an untracked message) is made and signed once per form
    (as it is, or converted to 7-bit) for every recipient's transaction; a tracked message's,
    per recipient."""

    def __init__(self, message: OutboundMessage):
        self.message = message
        self._shared: dict[tuple, bytes | Unconvertible] = {}
        self._return_path_domain = ""
        self._eight_bit: bool | None = None

    def return_path(self, recipient: Recipient) -> str:
        """The recipient's own return path: whatever comes back to it is about this recipient
        of this message, and nobody else."""
        if not self._return_path_domain:
            self._return_path_domain = return_path_domain_for(sender_address(self.message))
        return verp_address(str(self.message.message_id), self._return_path_domain, recipient.pk)

    @property
    def eight_bit(self) -> bool:
        """Whether the message holds 8-bit bytes (tracking adds none: it keeps each part's
        transfer encoding and charset, and what it adds is ASCII)."""
        if self._eight_bit is None:
            self._eight_bit = is_8bit(bytes(self.message.content))
        return self._eight_bit

    def content(self, recipient: Recipient, eight_bit_mime: bool = True, smtputf8: bool = False):
        """The bytes sent to ``recipient``. ``eight_bit_mime``: whether the next hop offers
        8BITMIME; where it does not, 8-bit content is converted (Unconvertible when it cannot
        be), with UTF-8 header fields kept where it offers ``smtputf8``."""
        form = () if eight_bit_mime or not self.eight_bit else (smtputf8,)
        if tracked(self.message):
            return self._make(recipient.email, form)
        if form not in self._shared:
            try:
                self._shared[form] = self._make(None, form)
            except Unconvertible as exc:
                self._shared[form] = exc
        made = self._shared[form]
        if isinstance(made, Unconvertible):
            raise made
        return made

    def _make(self, email: str | None, form: tuple) -> bytes:
        if not form:
            return message_bytes(self.message, email)
        return seven_bit_bytes(self.message, email, utf8_headers=form[0])
