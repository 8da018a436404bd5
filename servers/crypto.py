"""Secrets at rest: generation, encryption and look-up digests.

Tokens are long random values made here, never human passwords, so a keyed fast hash is the right
look-up digest (a slow password hash would cap AUTH at a few per second). CRAM-MD5 and DIGEST-MD5
need the secret itself on the server side, so it is also kept encrypted (Fernet: AES-128-CBC plus
HMAC-SHA256). Both keys are derived from ``settings.SECRETS_KEY``, which lives in the environment
(or a key file in DATA_DIR), never in the database: a database dump alone reveals no secret.
"""

import base64
import hashlib
import hmac
import secrets
import string
import uuid
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


def _derive(purpose: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
    return hkdf.derive(settings.SECRETS_KEY.encode())


@lru_cache(maxsize=4)
def _keys(secrets_key: str) -> tuple[bytes, Fernet]:
    digest_key = _derive(b"postmark-site token digest v1")
    fernet = Fernet(base64.urlsafe_b64encode(_derive(b"postmark-site token encryption v1")))
    return digest_key, fernet


def digest(value: str) -> str:
    """HMAC-SHA256 of a token under the server key: what the database indexes for look-ups."""
    digest_key, _ = _keys(settings.SECRETS_KEY)
    return hmac.new(digest_key, value.encode(), hashlib.sha256).hexdigest()


def encrypt(value: str) -> str:
    _, fernet = _keys(settings.SECRETS_KEY)
    return fernet.encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    _, fernet = _keys(settings.SECRETS_KEY)
    return fernet.decrypt(token.encode()).decode()


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
