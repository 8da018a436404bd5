"""Domains and sender signatures in Postmark's field names, as plain functions (the API and
anything else that shows them in Postmark's shape). Every field is always present, never null.

Postmark shows a key in ``DKIMHost``/``DKIMTextValue`` only once it signs: a new domain's key
is in ``DKIMPendingHost``/``DKIMPendingTextValue`` with ``DKIMUpdateStatus`` ``Pending`` until
its record has been seen, and after a rotation the old key moves to ``DKIMRevokedHost``. The
Ed25519 key, which Postmark does not have, is shown in extra fields of the same pattern
(``DKIMEd25519Host``, ``DKIMEd25519TextValue``, ``DKIMEd25519PendingHost``, ...).
"""

import base64
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from core import dkim_keys as keys
from domains.models import DkimKey, Domain, SenderSignature
from domains.services import safe_to_remove

ACTIVE, PENDING, REVOKED = DkimKey.State.ACTIVE, DkimKey.State.PENDING, DkimKey.State.REVOKED
# Receivers score RSA keys under 1024 bits as weak (Postmark's WeakDKIM).
WEAK_RSA_BITS = 1024


@lru_cache(maxsize=1024)
def _rsa_bits(public_key: str) -> int | None:
    try:
        key = load_der_public_key(base64.b64decode(public_key))
    except ValueError:
        return None
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


def weak_dkim(domain: Domain) -> bool:
    key = domain.key(ACTIVE) or domain.key(PENDING)
    if key is None:
        return False
    bits = _rsa_bits(key.public_key)
    return bits is not None and bits < WEAK_RSA_BITS


def _record(key: DkimKey | None) -> tuple[str, str]:
    return (key.host, key.text_value) if key is not None else ("", "")


def domain_summary_json(domain: Domain) -> dict:
    """A domain as ``GET /domains`` lists it."""
    return {
        "ID": domain.pk,
        "Name": domain.name,
        "SPFVerified": domain.spf_verified,
        "DKIMVerified": domain.dkim_verified,
        "WeakDKIM": weak_dkim(domain),
        "ReturnPathDomainVerified": domain.return_path_verified,
    }


def dkim_json(domain: Domain | None, spf_host: str = "", spf_text: str = "") -> dict:
    """The SPF, DKIM and Return-Path fields a domain's and a sender signature's details share;
    all empty (nothing verified) when there is no domain."""
    if domain is None:
        return {
            "SPFVerified": False,
            "SPFHost": spf_host,
            "SPFTextValue": spf_text,
            "DKIMVerified": False,
            "WeakDKIM": False,
            "DKIMHost": "",
            "DKIMTextValue": "",
            "DKIMPendingHost": "",
            "DKIMPendingTextValue": "",
            "DKIMRevokedHost": "",
            "DKIMRevokedTextValue": "",
            "SafeToRemoveRevokedKeyFromDNS": False,
            "DKIMUpdateStatus": "Pending",
        }
    active_host, active_value = _record(domain.key(ACTIVE))
    pending_host, pending_value = _record(domain.key(PENDING))
    revoked_host, revoked_value = _record(domain.key(REVOKED))
    return {
        "SPFVerified": domain.spf_verified,
        "SPFHost": domain.spf_host,
        "SPFTextValue": domain.spf_text_value,
        "DKIMVerified": domain.dkim_verified,
        "WeakDKIM": weak_dkim(domain),
        "DKIMHost": active_host,
        "DKIMTextValue": active_value,
        "DKIMPendingHost": pending_host,
        "DKIMPendingTextValue": pending_value,
        "DKIMRevokedHost": revoked_host,
        "DKIMRevokedTextValue": revoked_value,
        "SafeToRemoveRevokedKeyFromDNS": safe_to_remove(domain.key(REVOKED)),
        "DKIMUpdateStatus": "Pending" if pending_host else "Verified",
    }


def ed25519_json(domain: Domain | None) -> dict:
    """The extra fields of the optional Ed25519 key (RFC 8463)."""
    active = domain.key(ACTIVE, keys.ED25519) if domain else None
    pending = domain.key(PENDING, keys.ED25519) if domain else None
    host, value = _record(active)
    pending_host, pending_value = _record(pending)
    return {
        "DKIMEd25519Host": host,
        "DKIMEd25519TextValue": value,
        "DKIMEd25519PendingHost": pending_host,
        "DKIMEd25519PendingTextValue": pending_value,
    }


def domain_json(domain: Domain) -> dict:
    """A domain's details, as ``GET /domains/{id}`` and every change of a domain return them."""
    return {
        "Name": domain.name,
        **dkim_json(domain),
        "ReturnPathDomain": domain.return_path_domain,
        "ReturnPathDomainVerified": domain.return_path_verified,
        "ReturnPathDomainCNAMEValue": domain.return_path_cname_value,
        "ID": domain.pk,
        **ed25519_json(domain),
    }


def sender_summary_json(signature: SenderSignature) -> dict:
    """A sender signature as ``GET /senders`` lists it."""
    return {
        "Domain": signature.domain,
        "EmailAddress": signature.email,
        "ReplyToEmailAddress": signature.reply_to,
        "Name": signature.name,
        "Confirmed": signature.confirmed,
        "ID": signature.pk,
    }


def sender_json(signature: SenderSignature, domain: Domain | None = None) -> dict:
    """A sender signature's details; the SPF, DKIM and Return-Path fields are those of the
    ``Domain`` of its address when there is one (looked up unless given)."""
    if domain is None:
        domain = Domain.objects.prefetch_related("keys").filter(name=signature.domain).first()
    return_path = signature.return_path_domain or (domain.return_path_domain if domain else "")
    return_path_verified = bool(
        domain and domain.return_path_verified and return_path == domain.return_path_domain
    )
    spf_text = Domain(name=signature.domain).spf_text_value
    return {
        "Domain": signature.domain,
        "EmailAddress": signature.email,
        "ReplyToEmailAddress": signature.reply_to,
        "Name": signature.name,
        "Confirmed": signature.confirmed,
        **dkim_json(domain, spf_host=signature.domain, spf_text=spf_text),
        "ReturnPathDomain": return_path,
        "ReturnPathDomainVerified": return_path_verified,
        "ReturnPathDomainCNAMEValue": Domain(name=signature.domain).return_path_cname_value,
        "ID": signature.pk,
        "ConfirmationPersonalNote": signature.confirmation_note,
        **ed25519_json(domain),
    }
