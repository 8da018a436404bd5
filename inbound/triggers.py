"""Inbound rule triggers (compat §13.4): the senders a server blocks, as an address or a bare
domain. Stored in one normal form (``normalise_rule``: lower case, the domain in IDNA A-labels),
so matching a sender is a plain comparison. The API (``/triggers/inboundrules``) and the admin
create and remove rules through these functions and share their errors."""

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from inbound import rules
from inbound.models import InboundRule

# Postmark's error codes of the rule triggers (HTTP 422).
RULE_QUERY = 800
RULE_REQUIRED = 809
RULE_EXISTS = 810
RULE_NOT_FOUND = 812
RULE_INVALID = 813


class RuleError(ValueError):
    """A rule that cannot be created or removed, with Postmark's ErrorCode."""

    def __init__(self, error_code: int, message: str):
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def _invalid(value: str) -> RuleError:
    shown = value if len(value) <= 100 else value[:100] + "…"
    return RuleError(
        RULE_INVALID,
        f"'{shown}' is not a valid email address or domain. A rule is an address "
        "(someone@example.com) or a bare domain (example.com).",
    )


def normalise_rule(value) -> str:
    """``value`` as rules are stored and compared (``inbound.rules.normalise_rule``: the form
    matching uses). RuleError 809 for nothing, 813 for anything else that is not an address or
    a bare domain (a non-string, a control character, a local part no address can have)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RuleError(RULE_REQUIRED, "A Rule is required: an email address or a domain.")
    if not isinstance(value, str):
        raise _invalid(str(value))
    text = value.strip()
    if not text.isprintable():
        raise _invalid(text.encode("unicode_escape").decode("ascii"))
    try:
        rule = rules.normalise_rule(text)
    except rules.InvalidRule:
        raise _invalid(text) from None
    try:  # what an address (or an address at the domain) may be
        validate_email(rule if "@" in rule else f"postmaster@{rule}")
    except ValidationError:
        raise _invalid(text) from None
    return rule


def create_rule(server, value) -> InboundRule:
    """A new rule of ``server`` blocking ``value``; RuleError 809, 810 or 813."""
    rule = normalise_rule(value)
    if InboundRule.objects.filter(server=server, rule=rule).exists():
        raise _exists(rule)
    try:
        with transaction.atomic():
            return InboundRule.objects.create(server=server, rule=rule)
    except IntegrityError:  # created at the same moment by another request
        raise _exists(rule) from None


def _exists(rule: str) -> RuleError:
    return RuleError(RULE_EXISTS, f"A rule for '{rule}' already exists on this server.")


def delete_rule(server, rule_id) -> str:
    """Removes ``server``'s rule ``rule_id``; returns Postmark's answer. RuleError 812 when the
    server has no such rule (another server's rule included)."""
    text = str(rule_id).strip()
    found = None
    if text.isascii() and text.isdigit() and len(text) <= 18:
        found = InboundRule.objects.filter(server=server, pk=int(text)).first()
    if found is None:
        named = f" {text}" if text.isascii() and text.isdigit() and len(text) <= 18 else ""
        raise RuleError(RULE_NOT_FOUND, f"Inbound rule{named} was not found on this server.")
    found.delete()
    return f"Rule {found.rule} removed."


def rule_json(rule: InboundRule) -> dict:
    return {"Rule": rule.rule, "ID": rule.pk}
