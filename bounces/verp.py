"""The VERP return path: ``pm_bounces+<MessageID>.<recipient>.<tag>@<bounce domain>``.

Every recipient's copy of a message goes out in an SMTP transaction of its own, with a return path
of its own, so whatever comes back to it is about that message *and that recipient*: a report can
only ever speak for the recipient whose address it arrived at. The address holds the MessageID
(32 hex digits), the id of the message's Recipient row (base 36) and a keyed tag of both (HMAC
under SECRETS_KEY, checked under every configured key): only the service can make one, and none
can be turned into another recipient's or another message's. It stays within RFC 5321's 64
characters for a local part.

Mail sent before return paths were per recipient went out with one per message,
``pm_bounces+<MessageID>.<tag>@…``; those are still read (with no recipient) for as long as such
mail can be reported on (``messages.bounce_intake`` decides how long, and what they may affect).

``verp_address`` makes an address, ``read_verp`` reads one back and checks its tag. The patterns
are also used by ``bounces.reports`` to find VERP addresses inside a returned message
(``message_id_in``: the MessageID of a match, its tag unchecked).
"""

import re
import uuid
from dataclasses import dataclass
from email.utils import parseaddr

from core import crypto

VERP_LOCAL_PART = "pm_bounces"
VERP_TAG_PURPOSE = b"verp"  # the per-message tags of mail sent before the upgrade
RECIPIENT_TAG_PURPOSE = b"verp recipient"
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID_RE = re.compile(rf"\s*<?\s*({UUID_PATTERN})\s*>?\s*", re.I)
VERP_TAG_LENGTH = 10  # hex digits: 40 bits of HMAC, checked before a report may touch anything
# 11 + 32 + 1 + 9 + 1 + 10 = 64 characters at most before the @ (RFC 5321 §4.5.3.1.1).
RECIPIENT_DIGITS = 9  # base 36: Recipient ids up to 36**9 (about 10**14)
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_PER_RECIPIENT = (
    rf"(?P<hex>[0-9a-f]{{32}})\.(?P<recipient>[0-9a-z]{{1,{RECIPIENT_DIGITS}}})"
    rf"\.(?P<tag>[0-9a-f]{{{VERP_TAG_LENGTH}}})"
)
_PER_MESSAGE = rf"(?P<uuid>{UUID_PATTERN})(?:\.(?P<message_tag>[0-9a-f]{{{VERP_TAG_LENGTH}}}))?"
_VERP = rf"{VERP_LOCAL_PART}\+(?:{_PER_RECIPIENT}|{_PER_MESSAGE})"
VERP_ADDRESS_RE = re.compile(rf"{_VERP}@[^@\s<>]+", re.I)
VERP_IN_TEXT_RE = re.compile(rf"{_VERP}@".encode(), re.I)


@dataclass(frozen=True)
class Verp:
    """What a return path the service handed out stands for."""

    message_id: str  # lower-case UUID
    recipient_id: int | None  # the Recipient row; None for a per-message return path


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = _BASE36[digit] + digits
        if not number:
            return digits


def _recipient_tag_input(message_id: str, recipient_id: int) -> str:
    return f"{message_id}.{recipient_id}"


def verp_address(message_id: str, domain: str, recipient_id: int) -> str:
    """The return path of one recipient's copy of a message (ValueError if bad):
    ``pm_bounces+<MessageID hex>.<Recipient id, base 36>.<tag>@<domain>``. The tag is a keyed
    HMAC of both (under the newest SECRETS_KEY): only the service can make one, so an address
    it did not hand out is refused at RCPT by the bounce MX."""
    canonical = str(uuid.UUID(str(message_id).strip()))
    domain = str(domain).strip().lstrip("@")
    if not domain or "@" in domain or any(c.isspace() for c in domain):
        raise ValueError(f"not a bounce domain: {domain!r}")
    if isinstance(recipient_id, bool) or not isinstance(recipient_id, int) or recipient_id < 1:
        raise ValueError(f"not a recipient id: {recipient_id!r}")
    encoded = _base36(recipient_id)
    if len(encoded) > RECIPIENT_DIGITS:
        raise ValueError(f"recipient id too large for a return path: {recipient_id}")
    tag = crypto.tag(
        RECIPIENT_TAG_PURPOSE, _recipient_tag_input(canonical, recipient_id), VERP_TAG_LENGTH
    )
    return f"{VERP_LOCAL_PART}+{uuid.UUID(canonical).hex}.{encoded}.{tag}@{domain}"


def read_verp(address: str) -> Verp | None:
    """What a return path stands for, or None if it is not one the service handed out (no tag,
    a tag it did not make under any configured key, a recipient id written otherwise than it
    writes it). Letter case does not matter: some servers change it."""
    try:
        text = str(address or "").strip()
        if ";" in text:  # DSN address-type prefix, e.g. "rfc822; pm_bounces+…@…"
            text = text.split(";", 1)[1]
        addr = parseaddr(text)[1] or text.strip().strip("<>")
        match = VERP_ADDRESS_RE.fullmatch(addr.strip())
        if not match:
            return None
        message_id = message_id_in(match)
        if match.group("hex"):
            encoded = match.group("recipient").lower()
            recipient_id = int(encoded, 36)
            if recipient_id < 1 or _base36(recipient_id) != encoded:
                return None  # "0a" for "a": not a form the service writes
            value = _recipient_tag_input(message_id, recipient_id)
            given = match.group("tag")
            if crypto.tag_matches(RECIPIENT_TAG_PURPOSE, value, given, VERP_TAG_LENGTH):
                return Verp(message_id, recipient_id)
            return None
        if crypto.tag_matches(
            VERP_TAG_PURPOSE, message_id, match.group("message_tag"), VERP_TAG_LENGTH
        ):
            return Verp(message_id, None)
        return None
    except Exception:
        return None


def message_id_from_verp(address: str) -> str:
    """The MessageID (lower-case UUID) of a return path the service handed out, or ""."""
    found = read_verp(address)
    return found.message_id if found else ""


def message_id_in(match: re.Match) -> str:
    """The MessageID (lower-case UUID) of a ``VERP_ADDRESS_RE`` or ``VERP_IN_TEXT_RE`` match,
    its tag unchecked: which message a returned copy shows it was."""
    value = match.group("hex") or match.group("uuid")
    if isinstance(value, bytes):
        value = value.decode("ascii")
    return str(uuid.UUID(value))


def uuid_or_blank(value: str) -> str:
    match = _UUID_RE.fullmatch(str(value or ""))
    return match.group(1).lower() if match else ""
