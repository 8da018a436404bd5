"""A domain as Postmark describes it (compat §8's domain details): the records to publish and
what verification found, in Postmark's field names."""

from core import dkim_keys as keys
from domains.models import DkimKey, Domain
from domains.services import safe_to_remove


def domain_details(domain: Domain) -> dict:
    """Postmark's domain details. ``DKIMHost``/``DKIMTextValue`` are the key that signs (empty
    until a key's record has been seen); ``DKIMPending…`` the key to publish next (a new
    domain's first key, or a rotation's new key); ``DKIMRevoked…`` the key a rotation replaced."""
    active = domain.key(DkimKey.State.ACTIVE)
    pending = domain.key(DkimKey.State.PENDING)
    revoked = domain.key(DkimKey.State.REVOKED)
    details = {
        "ID": domain.pk,
        "Name": domain.name,
        "SPFVerified": domain.spf_verified,
        "SPFHost": domain.spf_host,
        "SPFTextValue": domain.spf_text_value,
        "DKIMVerified": domain.dkim_verified,
        "WeakDKIM": False,  # every key is 2048-bit RSA (or Ed25519)
        "DKIMHost": active.host if active else "",
        "DKIMTextValue": active.text_value if active else "",
        "DKIMPendingHost": pending.host if pending else "",
        "DKIMPendingTextValue": pending.text_value if pending else "",
        "DKIMRevokedHost": revoked.host if revoked else "",
        "DKIMRevokedTextValue": revoked.text_value if revoked else "",
        "SafeToRemoveRevokedKeyFromDNS": safe_to_remove(revoked),
        "DKIMUpdateStatus": "Pending" if pending else "Verified",
        "ReturnPathDomain": domain.return_path_domain,
        "ReturnPathDomainVerified": domain.return_path_verified,
        "ReturnPathDomainCNAMEValue": domain.return_path_cname_value,
    }
    return details


def records_to_publish(domain: Domain) -> list[dict]:
    """Every DNS record the domain's owner publishes, with its state, for people (the admin,
    ``createdomain``): each DKIM key that is not revoked, the Return-Path CNAME, the SPF TXT."""
    rows = []
    for key in domain.keys.exclude(state=DkimKey.State.REVOKED).order_by("pk"):
        label = "DKIM" if key.algorithm == keys.RSA else "DKIM (Ed25519)"
        if key.state == DkimKey.State.PENDING:
            label += " (pending)"
        rows.append(
            {
                "record": label,
                "type": "TXT",
                "host": key.host,
                "value": key.text_value,
                "verified": key.state == DkimKey.State.ACTIVE and domain.dkim_verified,
                "checked_at": domain.dkim_checked_at,
            }
        )
    if domain.return_path_domain:  # the service's own domain has none
        rows.append(
            {
                "record": "Return-Path",
                "type": "CNAME",
                "host": domain.return_path_domain,
                "value": domain.return_path_cname_value,
                "verified": domain.return_path_verified,
                "checked_at": domain.return_path_checked_at,
            }
        )
    rows.append(
        {
            "record": "SPF (informational)",
            "type": "TXT",
            "host": domain.spf_host,
            "value": domain.spf_text_value,
            "verified": domain.spf_verified,
            "checked_at": domain.spf_checked_at,
        }
    )
    for key in domain.keys.filter(state=DkimKey.State.REVOKED).order_by("pk"):
        rows.append(
            {
                "record": "DKIM (revoked)",
                "type": "TXT",
                "host": key.host,
                "value": key.text_value,
                "verified": None,
                "checked_at": key.revoked_at,
                "safe_to_remove": safe_to_remove(key),
            }
        )
    return rows
