"""The VERP return path: ``pm_bounces+<MessageID>.<tag>@<bounce domain>``.

Every message goes out with a return path of its own, so that whatever comes back to it names the
message it is about. ``verp_address`` makes one (the tag is a keyed HMAC of the MessageID, so only
the service can make a valid address); ``message_id_from_verp`` reads the MessageID back and checks
the tag. The patterns here are also used by ``bounces.reports`` to find VERP addresses inside a
returned message.
"""

import re
import uuid
from email.utils import parseaddr

from core import crypto

VERP_LOCAL_PART = "pm_bounces"
VERP_TAG_PURPOSE = b"verp"
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID_RE = re.compile(rf"\s*<?\s*({UUID_PATTERN})\s*>?\s*", re.I)
VERP_TAG_LENGTH = 10  # hex digits: 40 bits of HMAC, checked before a report may touch anything
_VERP_TAG = rf"(?:\.([0-9a-f]{{{VERP_TAG_LENGTH}}}))?"
VERP_ADDRESS_RE = re.compile(rf"{VERP_LOCAL_PART}\+({UUID_PATTERN}){_VERP_TAG}@[^@\s<>]+", re.I)
VERP_IN_TEXT_RE = re.compile(rf"{VERP_LOCAL_PART}\+({UUID_PATTERN}){_VERP_TAG}@".encode(), re.I)


def verp_address(message_id: str, domain: str) -> str:
    """The return path for a message: ``pm_bounces+<MessageID>.<tag>@<domain>`` (ValueError if
    bad). The tag is a keyed HMAC of the MessageID (under SECRETS_KEY): only the service can make
    one, so an address it did not hand out is refused at RCPT by the bounce MX."""
    canonical = str(uuid.UUID(str(message_id).strip()))
    domain = str(domain).strip().lstrip("@")
    if not domain or "@" in domain or any(c.isspace() for c in domain):
        raise ValueError(f"not a bounce domain: {domain!r}")
    tag = crypto.tag(VERP_TAG_PURPOSE, canonical, VERP_TAG_LENGTH)
    return f"{VERP_LOCAL_PART}+{canonical}.{tag}@{domain}"


def message_id_from_verp(address: str) -> str:
    """The MessageID (lower-case UUID) in a VERP address, or "" if it is not one of ours (no tag,
    or a tag the service did not make)."""
    try:
        text = str(address or "").strip()
        if ";" in text:  # DSN address-type prefix, e.g. "rfc822; pm_bounces+…@…"
            text = text.split(";", 1)[1]
        addr = parseaddr(text)[1] or text.strip().strip("<>")
        match = VERP_ADDRESS_RE.fullmatch(addr.strip())
        if not match:
            return ""
        message_id = str(uuid.UUID(match.group(1)))
        if not crypto.tag_matches(VERP_TAG_PURPOSE, message_id, match.group(2), VERP_TAG_LENGTH):
            return ""  # not an address the service handed out
        return message_id
    except Exception:
        return ""


def uuid_or_blank(value: str) -> str:
    match = _UUID_RE.fullmatch(str(value or ""))
    return match.group(1).lower() if match else ""
