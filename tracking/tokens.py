"""Tracking tokens: the base URL, and the signed tokens of the open pixel and the click redirect.

Tokens are signed with ``django.core.signing`` (SECRET_KEY, with SECRET_KEY_FALLBACKS honoured)
under one salt for opens and another for clicks. They carry the MessageID and the recipient, and
for clicks the original URL and where it was (HTML or Text) — so a click redirects only to a URL
this service itself put in a message: no open redirect, even after the message has been purged.
"""

import binascii
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing

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


def open_token(message_id: uuid.UUID | str, recipient: str) -> str:
    return _signer(OPEN_SALT).sign_object(
        [uuid.UUID(str(message_id)).hex, recipient], compress=True
    )


def click_token(message_id: uuid.UUID | str, recipient: str, url: str, location: str) -> str:
    payload = [uuid.UUID(str(message_id)).hex, recipient, url, "H" if location == HTML else "T"]
    return _signer(CLICK_SALT).sign_object(payload, compress=True)


def open_url(message_id: uuid.UUID | str, recipient: str) -> str:
    return f"{base_url()}/o/{open_token(message_id, recipient)}"


def click_url(message_id: uuid.UUID | str, recipient: str, url: str, location: str) -> str:
    return f"{base_url()}/c/{click_token(message_id, recipient, url, location)}"


def _unsign(token: str, salt: str):
    """The payload of a token signed by us, or None. A suffix such as ``.gif`` is ignored."""
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
    payload = _unsign(token, OPEN_SALT)
    if not (isinstance(payload, list) and len(payload) == 2):
        return None
    try:
        return OpenToken(uuid.UUID(hex=payload[0]), str(payload[1]))
    except (ValueError, TypeError, AttributeError):
        return None


def read_click_token(token: str) -> ClickToken | None:
    payload = _unsign(token, CLICK_SALT)
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
