"""DKIM key pairs: generation, the DNS TXT value that publishes a public key, and loading.

RSA keys are 2048 bits (Postal still makes 1024-bit ones, which receivers score as weak); Ed25519
keys (RFC 8463) are optional and sign in addition to RSA, since many receivers verify only RSA.
The private key is stored encrypted (``core.crypto``), never in clear in the database.
"""

import base64
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from core import crypto

RSA = "rsa"
ED25519 = "ed25519"
RSA_BITS = 2048


def generate(algorithm: str) -> tuple[str, str]:
    """A new key pair: (private key as PKCS#8 PEM, public key as the TXT record's ``p=``)."""
    if algorithm == RSA:
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif algorithm == ED25519:
        private = ed25519.Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        raise ValueError(f"unknown DKIM key algorithm {algorithm!r}")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode(), base64.b64encode(public).decode()


def txt_value(algorithm: str, public_key: str) -> str:
    """The TXT record to publish, in Postmark's form (``k=rsa;p=…``)."""
    return f"k={algorithm};p={public_key}"


@lru_cache(maxsize=256)
def load_private_key(private_key_encrypted: str):
    """The private key object for a stored (encrypted) PEM; cached, so a worker decrypts and
    parses each key once rather than once per message."""
    return serialization.load_pem_private_key(
        crypto.decrypt(private_key_encrypted).encode(), password=None
    )
