"""What the domain commands print: the records to publish, and what a check found."""

from domains import grace
from domains.details import records_to_publish
from domains.models import Domain
from domains.services import revoked_key_grace, safe_to_remove
from domains.verification import RecordCheck


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


def records_table(domain: Domain) -> str:
    """The DNS records of ``domain``, one block each (values are too long for a table row)."""
    lines = [f"DNS records of {domain.name}:", ""]
    for row in records_to_publish(domain):
        if row["verified"] is None:
            state = (
                "safe to remove from DNS"
                if row.get("safe_to_remove")
                else "keep in DNS for now: messages it signed may still be on their way"
            )
        else:
            state = "verified" if row["verified"] else "not verified"
            state += f", last checked {_when(row['checked_at'])}"
        lines += [
            f"  {row['record']}: {state}",
            f"    type:  {row['type']}",
            f"    host:  {row['host']}",
            f"    value: {row['value']}",
            "",
        ]
    if domain.dns_problem:
        lines += [f"Problem since {_when(domain.dns_problem_since)}:", domain.dns_problem, ""]
    lines += [f.sentence for f in grace.failing(domain) if f.failed_checks]
    return "\n".join(lines)


def checks_table(domain: Domain, checks: list[RecordCheck]) -> str:
    lines = [f"Checks of {domain.name}:", ""]
    for check in checks:
        label = check.record
        if check.key is not None and check.key.state == "pending":
            label += " (pending key)"
        lines += [
            f"  {label}: {check.status}",
            f"    {check.type} at {check.host}",
            f"    expected: {check.expected}",
        ]
        if not check.verified:
            lines.append(f"    found:    {'; '.join(check.found) or '(nothing)'}")
        lines += [f"    {check.detail}", ""]
    lines.append(
        f"DKIM verified: {'yes' if domain.dkim_verified else 'no'}; Return-Path verified: "
        f"{'yes' if domain.return_path_verified else 'no'}; SPF verified: "
        f"{'yes' if domain.spf_verified else 'no'} (informational)."
    )
    # A record this check did not find is un-verified only after the grace period: say so.
    lines += [f.sentence for f in grace.failing(domain) if f.gated and f.failed_checks]
    for key in domain.keys.filter(state="revoked").order_by("pk"):
        if safe_to_remove(key):
            lines.append(f"Revoked key {key.host}: its TXT record is safe to remove from DNS.")
        else:
            until = _when(key.revoked_at + revoked_key_grace())
            lines.append(
                f"Revoked key {key.host}: keep its TXT record until {until} (messages it "
                "signed may still be on their way)."
            )
    if not domain.dkim_verified:
        lines.append(
            f"Until DKIM is verified, mail From @{domain.name} is refused (ErrorCode 400), "
            "except from confirmed sender signatures."
        )
    return "\n".join(lines)


def find_domain(name: str) -> Domain:
    from django.core.management.base import CommandError

    from core.addresses import InvalidDomain, ascii_domain

    try:
        domain = Domain.objects.filter(name=ascii_domain(name)).first()
    except InvalidDomain:
        domain = None
    if domain is None:
        raise CommandError(f"No domain named {name!r} (create it with createdomain).")
    return domain
