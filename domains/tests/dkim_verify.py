"""An independent verifier for the tests: dkimpy, with DNS answered from published records."""

import re

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization

from core import dkim
from core import dkim_keys as keys


class PublishedKeys:
    """TXT records at ``<selector>._domainkey.<domain>``, served to dkimpy as its dnsfunc."""

    def __init__(self):
        self.records: dict[str, str] = {}

    def publish(self, host: str, value: str) -> None:
        self.records[host.rstrip(".").lower()] = value

    def publish_key(self, key) -> None:
        """Publish a ``DkimKey``'s record, as its domain's owner would."""
        self.publish(key.host, key.text_value)

    def remove(self, host: str) -> None:
        self.records.pop(host.rstrip(".").lower(), None)

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        value = self.records.get(name.decode("ascii").rstrip(".").lower())
        return value.encode("ascii") if value is not None else None


def new_signer(domain: str, selector: str, algorithm: str, dns: PublishedKeys) -> dkim.Signer:
    """A signer with a fresh key pair, its record published."""
    pem, public = keys.generate(algorithm)
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    dns.publish(f"{selector}._domainkey.{domain}", keys.txt_value(algorithm, public))
    return dkim.Signer(domain, selector, key)


def verify_all(message: bytes, dns: PublishedKeys) -> list[bool]:
    """dkimpy's verdict on every DKIM-Signature of the message, top down."""
    checker = dkimpy.DKIM(message)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    return [_verify(message, i, dns) for i in range(count)]


def _verify(message: bytes, idx: int, dns: PublishedKeys) -> bool:
    try:
        return dkimpy.DKIM(message).verify(idx=idx, dnsfunc=dns)
    except dkimpy.DKIMException:  # e.g. "body hash mismatch": not verified
        return False


def signature_tags(message: bytes) -> list[dict[str, str]]:
    """The tags of every DKIM-Signature of the message, top down."""
    checker = dkimpy.DKIM(message)
    found = []
    for name, value in checker.headers:
        if name.lower() == b"dkim-signature":
            tags = dkimpy.util.parse_tag_value(value)
            found.append({k.decode(): v.decode() for k, v in tags.items()})
    return found


_SIGNATURE_FIELD = re.compile(rb"\ADKIM-Signature:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", re.I)


def unsigned(content: bytes) -> bytes:
    """``content`` without the DKIM-Signature fields in front of it."""
    while match := _SIGNATURE_FIELD.match(content):
        content = content[match.end() :]
    return content
