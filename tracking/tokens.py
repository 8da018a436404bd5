"""Tracking tokens: the base URL, and the tokens of the open pixel and the click redirect.

A token carries the MessageID and the recipient, and for clicks the original URL and where it was
(HTML or Text) — so a click redirects only to a URL this service itself put in a message (no open
redirect, even after the message has been purged). The payload is sealed (``core.crypto.seal``:
AES-256-GCM under a key derived from SECRET_KEY, SECRET_KEY_FALLBACKS honoured), one purpose for
opens and another for clicks: a link in a forwarded message shows neither the recipient's address
nor the target URL, and cannot be altered.

Tokens of the earlier form (a readable payload signed with ``django.core.signing``, ``~`` before
the signature) are still read, so links in mail already sent keep working.
"""

import binascii
import json
import uuid
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing

from core.crypto import seal, unseal

OPEN_SALT = "streams.tracking.open"
CLICK_SALT = "streams.tracking.click"
# Not in base64url's alphabet (nor "." which marks a compressed payload), unreserved in URLs.
TOKEN_SEP = "~"

HTML = "HTML"
TEXT = "Text"


def base_url() -> str:
    return getattr(settings, "TRACKING_BASE_URL", "http://127.0.0.1:8000").rstrip("/")


def _signer(salt: str) -> signing.Signer:
    return signing.Signer(salt=salt, sep=TOKEN_SEP)


def _keys() -> list[str]:
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]


def _sealed(payload: list, salt: str) -> str:
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    packed = zlib.compress(data, 9)
    data = b"z" + packed if len(packed) < len(data) else b"j" + data
    return seal(_keys(), salt.encode(), data)


def open_token(message_id: uuid.UUID | str, recipient: str) -> str:
    return _sealed([uuid.UUID(str(message_id)).hex, recipient], OPEN_SALT)


def click_token(message_id: uuid.UUID | str, recipient: str, url: str, location: str) -> str:
    payload = [uuid.UUID(str(message_id)).hex, recipient, url, "H" if location == HTML else "T"]
    return _sealed(payload, CLICK_SALT)


def open_url(message_id: uuid.UUID | str, recipient: str) -> str:
    return f"{base_url()}/o/{open_token(message_id, recipient)}"


def click_url(message_id: uuid.UUID | str, recipient: str, url: str, location: str) -> str:
    return f"{base_url()}/c/{click_token(message_id, recipient, url, location)}"


def _read(token: str, salt: str):
    """The payload of a token made by us, or None. A suffix such as ``.gif`` is ignored."""
    if TOKEN_SEP in token:
        return _unsign(token, salt)
    data = unseal(_keys(), salt.encode(), token.split(".", 1)[0])
    if not data:
        return None
    try:
        if data[:1] == b"z":
            data = b"j" + zlib.decompressobj().decompress(data[1:], 64 * 1024)
        return json.loads(data[1:]) if data[:1] == b"j" else None
    except (ValueError, zlib.error):
        return None


def _unsign(token: str, salt: str):
    """The payload of an earlier, signed token, or None."""
    head, sep, signature = token.partition(TOKEN_SEP)
    if not sep or TOKEN_SEP in signature:
        return None
    signature = signature.split(".", 1)[0]
    try:
        return _signer(salt).unsign_object(f"{head}{TOKEN_SEP}{signature}")
    except (signing.BadSignature, ValueError, TypeError, UnicodeError, binascii.Error):
        return None
    except Exception:  # zlib.error and the like from a payload that was never ours
        return None


@dataclass(frozen=True)
class OpenToken:
    message_id: uuid.UUID
    recipient: str


@dataclass(frozen=True)
class ClickToken:
    message_id: uuid.UUID
    recipient: str
    url: str
    location: str  # "HTML" | "Text"


def read_open_token(token: str) -> OpenToken | None:
    payload = _read(token, OPEN_SALT)
    if not (isinstance(payload, list) and len(payload) == 2):
        return None
    try:
        return OpenToken(uuid.UUID(hex=payload[0]), str(payload[1]))
    except (ValueError, TypeError, AttributeError):
        return None


def read_click_token(token: str) -> ClickToken | None:
    payload = _read(token, CLICK_SALT)
    if not (isinstance(payload, list) and len(payload) == 4):
        return None
    try:
        message_id = uuid.UUID(hex=payload[0])
    except (ValueError, TypeError, AttributeError):
        return None
    url, location = payload[2], payload[3]
    if not isinstance(url, str) or not is_http_url(url) or location not in ("H", "T"):
        return None
    return ClickToken(message_id, str(payload[1]), url, HTML if location == "H" else TEXT)


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
