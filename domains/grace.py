"""The grace period of a verified record that DNS stops showing, and what fails since when.

One definite answer (NXDOMAIN, no such record, another value) from a flaky authoritative name
server must not stop a domain's mail. A verified DKIM or Return-Path record (the records that
decide how mail goes out) is therefore un-verified only once ``DNS_UNVERIFY_AFTER_FAILURES``
checks in a row have failed over at least ``DNS_UNVERIFY_AFTER_HOURS``; meanwhile the domain
keeps signing and sending. The run of failures is kept on the domain (``<record>_failing_since``,
``<record>_failed_checks``); a check that sees the record ends it, and a temporary failure
(timeout, SERVFAIL) neither counts nor ends it. A record that was never verified has no grace: it
is verified as soon as it is seen, and not before. SPF, informational, has none either.

The same rule holds for every check, periodic or asked for (the admin's Verify now, the API's
verify endpoints, ``verifydomain``): an explicit check verifies at once, but a failed one is one
more failed check, not an un-verification; the admin and the command say so (``failing``).
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F

from core.times import admin_time
from domains.models import Domain

log = logging.getLogger(__name__)

DKIM = "DKIM"
RETURN_PATH = "Return-Path"
SPF = "SPF"
TEMPORARY = "temporary failure"  # the prefix of a problem that proves nothing

# The records with a grace period: record -> (flag, failing since, failed checks).
GATED = {
    DKIM: ("dkim_verified", "dkim_failing_since", "dkim_failed_checks"),
    RETURN_PATH: ("return_path_verified", "return_path_failing_since", "return_path_failed_checks"),
}
FLAGS = {**{record: fields[0] for record, fields in GATED.items()}, SPF: "spf_verified"}
FIELDS = [field for fields in GATED.values() for field in fields[1:]]  # to save


def grace_period() -> timedelta:
    return timedelta(hours=settings.DNS_UNVERIFY_AFTER_HOURS)


def clear(domain: Domain, record: str) -> None:
    """Forget ``record``'s failures (the record was seen, or it no longer applies)."""
    _, since, count = GATED[record]
    setattr(domain, since, None)
    setattr(domain, count, 0)


def after_check(domain: Domain, record: str, found: bool, definite: bool, now: datetime) -> None:
    """Set ``record``'s flag on ``domain`` (a locked row its caller saves) after a check:
    ``found`` verifies at once and ends the failures; a definite failure of a verified record,
    or of one already failing, is counted, and un-verifies only once the grace is over; a record
    never verified stays as it is; a temporary failure changes nothing."""
    flag, since_field, count_field = GATED[record]
    if found:
        setattr(domain, flag, True)
        clear(domain, record)
        return
    verified, since = getattr(domain, flag), getattr(domain, since_field)
    if not definite or (not verified and since is None):
        return
    since = since or now
    count = getattr(domain, count_field) + 1
    setattr(domain, since_field, since)
    setattr(domain, count_field, count)
    if verified and grace_over(since, count, now):
        setattr(domain, flag, False)
        log.warning(
            "%s of %s un-verified: %d checks in a row failed since %s",
            record, domain.name, count, since.isoformat(),
        )  # fmt: skip


def rule() -> str:
    """The grace period, in a sentence for people."""
    hours = settings.DNS_UNVERIFY_AFTER_HOURS
    return (
        "A verified DKIM or Return-Path record that a check does not find stays verified until "
        f"{settings.DNS_UNVERIFY_AFTER_FAILURES} checks in a row over {hours:g} h have failed."
    )


def grace_over(since: datetime, count: int, now: datetime) -> bool:
    return count >= settings.DNS_UNVERIFY_AFTER_FAILURES and now - since >= grace_period()


# --- What fails, for people and metrics ---------------------------------------------------------


def problems(text: str) -> dict[str, str]:
    """``Domain.dns_problem`` as {record: problem}: one line per record, ``<record>: <problem>``."""
    found = {}
    for line in text.splitlines():
        record, sep, problem = line.partition(": ")
        if sep:
            found[record] = problem
    return found


@dataclass
class Failing:
    """One record of a domain that its last checks did not find as expected."""

    domain: str
    record: str  # DKIM, Return-Path, SPF
    problem: str  # what the last check found
    since: datetime | None
    failed_checks: int  # definite failures in a row (0: only temporary ones)
    verified: bool  # the record's flag now: True while the grace lasts
    gated: bool  # DKIM or Return-Path: the flag decides how mail goes out

    @property
    def temporary(self) -> bool:
        return self.problem.startswith(TEMPORARY)

    @property
    def in_grace(self) -> bool:
        """Still verified although a definite check failed: mail goes on as before."""
        return self.gated and self.verified and self.failed_checks > 0

    @property
    def unverify_after(self) -> datetime | None:
        """While the grace lasts: the time from which a failed check un-verifies the record
        (once ``DNS_UNVERIFY_AFTER_FAILURES`` checks in a row have failed)."""
        return self.since + grace_period() if self.in_grace and self.since else None

    @property
    def sentence(self) -> str:
        when = _when(self.since)
        if self.in_grace:
            checks = _checks(self.failed_checks)
            return (
                f"{self.record} of {self.domain}: {checks} failed since {when}; still verified, "
                f"mail is signed and sent as before. It is un-verified once "
                f"{settings.DNS_UNVERIFY_AFTER_FAILURES} checks in a row have failed, at the "
                f"first failed check from {_when(self.unverify_after)} on."
            )
        if self.gated and self.failed_checks:
            consequence = (
                f"mail From @{self.domain} is refused (ErrorCode 400)"
                if self.record == DKIM
                else "bounces come back under the service's bounce domain"
            )
            return (
                f"{self.record} of {self.domain}: {_checks(self.failed_checks)} failed since "
                f"{when}; un-verified after the grace period: {consequence} until the record "
                "is seen again."
            )
        if self.temporary:
            return (
                f"{self.record} of {self.domain}: the look-up fails temporarily since {when}; "
                "nothing is concluded, the record keeps its state."
            )
        return f"{self.record} of {self.domain}: not as expected since {when}."


def _when(value: datetime | None) -> str:
    return admin_time(value, "an unknown time")


def _checks(count: int) -> str:
    return "1 check" if count == 1 else f"{count} checks"


def failing(domain: Domain) -> list[Failing]:
    """Every record of ``domain`` whose last check failed or that is in its grace period."""
    found = problems(domain.dns_problem)
    for record, (_, since, _) in GATED.items():
        if getattr(domain, since) is not None and record not in found:
            found[record] = ""
    rows = []
    for record, problem in sorted(found.items()):
        fields = GATED.get(record)
        since = getattr(domain, fields[1]) if fields else None
        rows.append(
            Failing(
                domain=domain.name,
                record=record,
                problem=problem,
                since=since or domain.dns_problem_since,
                failed_checks=getattr(domain, fields[2]) if fields else 0,
                verified=bool(getattr(domain, FLAGS.get(record, ""), False)),
                gated=fields is not None,
            )
        )
    return rows


FAILING_FIELDS = ("id", "name", "dns_problem", "dns_problem_since", "dkim_verified",
                  "return_path_verified", "spf_verified", *FIELDS)  # fmt: skip


def failing_domains(limit: int = 1000):
    """The domains with a failing record, the longest failing first (``failing`` of each)."""
    return (
        Domain.objects.exclude(
            dns_problem="", dkim_failing_since=None, return_path_failing_since=None
        )  # fmt: skip
        .only(*FAILING_FIELDS)
        .order_by(F("dns_problem_since").asc(nulls_last=True), "name")[:limit]
    )
