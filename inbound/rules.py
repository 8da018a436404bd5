"""Inbound rules: senders (an address, or every address at a domain) whose mail a server keeps as
Blocked instead of posting it (Postmark's ``/triggers/inboundrules``)."""

from core.addresses import InvalidDomain, address_key, ascii_domain, domain_of
from inbound.models import InboundRule

MAX_RULE_LENGTH = InboundRule._meta.get_field("rule").max_length


class InvalidRule(ValueError):
    """Neither an address nor a domain name (Postmark's ErrorCode 813)."""


def normalise_rule(value: str) -> str:
    """An address (``Someone@Example.COM`` → ``someone@example.com``) or a bare domain
    (``Bücher.example`` → ``xn--bcher-kva.example``), in the form rules are stored and compared
    in; InvalidRule for anything else."""
    text = (value or "").strip()
    if not text or len(text) > MAX_RULE_LENGTH or any(c.isspace() for c in text):
        raise InvalidRule(f"'{value}' is not a valid email address or domain.")
    local, at, domain = text.rpartition("@")
    if at and not local:
        raise InvalidRule(f"'{value}' is not a valid email address or domain.")
    try:
        name = ascii_domain(domain)
    except InvalidDomain:
        raise InvalidRule(f"'{value}' is not a valid email address or domain.") from None
    if "." not in name or "@" in local:
        raise InvalidRule(f"'{value}' is not a valid email address or domain.")
    return address_key(f"{local}@{name}") if at else name


def matching_rule(server_id: int, sender: str) -> str:
    """The rule of the server that blocks ``sender`` (its address or its domain), or ''."""
    if not sender:
        return ""
    candidates = {address_key(sender)}
    domain = domain_of(sender)
    if domain:
        candidates.add(domain)
    found = (
        InboundRule.objects.filter(server_id=server_id, rule__in=candidates)
        .values_list("rule", flat=True)
        .first()
    )
    return found or ""
