"""Secrets at rest: generation, encryption and look-up digests.

Tokens are long random values made here, never human passwords, so a keyed fast hash is the right
look-up digest (a slow password hash would cap AUTH at a few per second). CRAM-MD5 and DIGEST-MD5
need the secret itself on the server side, so it is also kept encrypted (Fernet: AES-128-CBC plus
HMAC-SHA256). Both keys are derived from ``settings.SECRETS_KEY``, which lives in the environment
(or a key file in DATA_DIR), never in the database: a database dump alone reveals no secret.

Rotation: ``SECRETS_KEY`` may hold several keys, comma-separated, newest first. New values are
encrypted and digested under the newest; decryption and look-ups accept every configured key, so
``manage.py rotatesecrets`` can move each stored secret to the newest key while the service runs.
Short tags (VERP return paths) cannot be rewritten: they are out in the world, on mail sent and
retried for up to DELIVERY_GIVE_UP_AFTER and answered by reports for VERP_ACCEPT_DAYS more, so the
old key stays in the setting for ``tag_lifetime()`` after the rotation, then it is dropped.
"""

import base64
import hashlib
import hmac
import re
import secrets
import string
import uuid
from datetime import timedelta
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def configured_keys() -> tuple[str, ...]:
    """The configured secrets keys, newest first."""
    keys = tuple(key.strip() for key in settings.SECRETS_KEY.split(",") if key.strip())
    if not keys:
        raise ImproperlyConfigured("SECRETS_KEY is empty")
    return keys


def _derive(secrets_key: str, purpose: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
    return hkdf.derive(secrets_key.encode())


@lru_cache(maxsize=8)
def _keys(secrets_key: str) -> tuple[bytes, Fernet]:
    digest_key = _derive(secrets_key, b"postmark-site token digest v1")
    encryption_key = _derive(secrets_key, b"postmark-site token encryption v1")
    return digest_key, Fernet(base64.urlsafe_b64encode(encryption_key))


def _digest(secrets_key: str, value: str) -> str:
    digest_key, _ = _keys(secrets_key)
    return hmac.new(digest_key, value.encode(), hashlib.sha256).hexdigest()


def digest(value: str) -> str:
    """HMAC-SHA256 of a token under the newest key: what the database indexes for look-ups."""
    return _digest(configured_keys()[0], value)


def digests(value: str) -> list[str]:
    """The token's digest under every configured key: a look-up matches a row digested under
    any of them (during a rotation, some rows still are under the old key)."""
    return [_digest(key, value) for key in configured_keys()]


def _tag(secrets_key: str, purpose: bytes, value: str, length: int) -> str:
    key = _derive(secrets_key, b"postmark-site tag v1 " + purpose)
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:length]


def tag(purpose: bytes, value: str, length: int = 10) -> str:
    """A short keyed tag of ``value`` under the newest key, for addresses the service hands out
    and must recognise as its own (e.g. VERP return paths)."""
    return _tag(configured_keys()[0], purpose, value, length)


def tag_matches(purpose: bytes, value: str, given: str, length: int = 10) -> bool:
    """Whether ``given`` is the tag of ``value`` under any configured key (constant time)."""
    given = str(given or "").lower()
    return any(
        hmac.compare_digest(_tag(key, purpose, value, length), given) for key in configured_keys()
    )


def tag_lifetime() -> timedelta:
    """How long a tag handed out now must still be recognised: the longest a message is retried
    (DELIVERY_GIVE_UP_AFTER) plus the days its return path takes reports (VERP_ACCEPT_DAYS). A
    key that stopped being the newest may be dropped from SECRETS_KEY this long afterwards."""
    return timedelta(seconds=settings.DELIVERY_GIVE_UP_AFTER) + timedelta(
        days=settings.VERP_ACCEPT_DAYS
    )


def encrypt(value: str) -> str:
    _, fernet = _keys(configured_keys()[0])
    return fernet.encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    """Decrypt under whichever configured key encrypted it."""
    return (
        MultiFernet([_keys(key)[1] for key in configured_keys()]).decrypt(token.encode()).decode()
    )


def new_api_token() -> str:
    """A server or account API token, shaped like Postmark's (a random UUID)."""
    return str(uuid.uuid4())


def new_access_key() -> str:
    return secrets.token_hex(16)


SECRET_ALPHABET = string.ascii_letters + string.digits


def new_secret_key() -> str:
    """40 letters and digits (about 238 bits). No punctuation: a secret that starts with '-' is
    taken for an option by command-line clients such as swaks."""
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(40))


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(a.encode(), b.encode())


# --- Sealed tokens: short encrypted values for URLs ---------------------------------------------
_SEAL_NONCE = 12
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@lru_cache(maxsize=16)
def _seal_key(secret: str, purpose: bytes) -> bytes:
    return _derive(secret, b"postmark-site sealed token v1 " + purpose)


def seal(secrets_: tuple[str, ...] | list[str], purpose: bytes, data: bytes) -> str:
    """``data`` encrypted and authenticated (AES-256-GCM, random nonce) under a key derived from
    the first of ``secrets_`` for ``purpose``, as base64url without padding: readable and
    alterable by nobody without the key, and bound to ``purpose`` (a token made for one use is
    refused for another)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(_SEAL_NONCE)
    sealed = AESGCM(_seal_key(secrets_[0], purpose)).encrypt(nonce, data, purpose)
    return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()


def unseal(secrets_: tuple[str, ...] | list[str], purpose: bytes, token: str) -> bytes | None:
    """The data ``seal`` sealed under any of ``secrets_`` for ``purpose``, or None for anything
    else (altered, truncated, another key or purpose, not base64url)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not token or len(token) > 8192 or not _BASE64URL.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) < _SEAL_NONCE + 16:
        return None
    for secret in secrets_:
        try:
            return AESGCM(_seal_key(secret, purpose)).decrypt(raw[:_SEAL_NONCE], raw[_SEAL_NONCE:],
                                                              purpose)  # fmt: skip
        except InvalidTag:
            continue
    return None
