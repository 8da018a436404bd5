"""DNS verification of a domain's records: DKIM, the custom Return-Path and (informational) SPF.

Each check looks the record up (``core.dns``, without a cache: through ``OUTBOUND_DNS_SERVERS``
when set, else the system's resolver), records what it found on the domain (the ``*_verified``
flag, ``*_checked_at`` and ``dns_problem``) and returns a readable ``RecordCheck``: what was
expected, what was found.

Answers are of two kinds. A *definite* one (the name does not exist, it has no such record, the
record differs) changes the state: a record that is seen is verified at once; a verified DKIM or
Return-Path record that vanished or changed is un-verified only after a grace period of failed
checks (``domains.grace``), so that one flaky answer does not stop a domain's mail. A *temporary*
one (timeout, SERVFAIL) proves nothing: the state is kept and only the problem is recorded.

DKIM keys move forward only: a pending key whose TXT record is seen becomes active; when an
active key of the same algorithm existed, this is the end of a rotation and the old key becomes
revoked. The old key signs until that moment, so there is never a window without a valid
signature. ``Domain.dkim_verified`` means: an active RSA key exists and its record was seen.
"""

import re
from dataclasses import dataclass, field

import dns.exception
import dns.resolver
from django.conf import settings
from django.db import transaction
from django.utils import timezone

import core.dns
from core import dkim_keys as keys
from domains import grace
from domains.grace import DKIM, RETURN_PATH, SPF, TEMPORARY
from domains.models import DkimKey, Domain
from domains.services import rotate_dkim  # noqa: F401 - a rotation's first step; verification ends it

VERIFIED = "verified"
MISSING = "missing"  # a definite answer: no such name, or no record of the type
MISMATCH = "mismatch"  # a definite answer: a record, but not the expected one
# TEMPORARY (from domains.grace): timeout, SERVFAIL: nothing is concluded


@dataclass
class Lookup:
    """The answer to one DNS query."""

    values: list[str] = field(default_factory=list)
    error: str = ""  # why there are no values
    temporary: bool = False


@dataclass
class RecordCheck:
    """The result of checking one record."""

    record: str  # DKIM, Return-Path, SPF
    host: str
    type: str  # TXT or CNAME
    expected: str
    found: list[str]
    status: str  # VERIFIED, MISSING, MISMATCH or TEMPORARY
    detail: str  # a sentence for people: what was expected, what was found
    key: DkimKey | None = None  # for DKIM checks

    @property
    def verified(self) -> bool:
        return self.status == VERIFIED

    @property
    def definite(self) -> bool:
        return self.status != TEMPORARY

    def as_dict(self) -> dict:
        return {
            "record": self.record,
            "host": self.host,
            "type": self.type,
            "expected": self.expected,
            "found": self.found,
            "status": self.status,
            "detail": self.detail,
        }


# --- Looking records up -------------------------------------------------------------------------


def lookup(name: str, rtype: str) -> Lookup:
    """The values of the ``rtype`` records at ``name``: TXT records with their strings joined,
    CNAME targets in lower case without the final dot. The resolver keeps no cache: a record
    just published must be seen."""
    resolver = core.dns.resolver(cached=False, lifetime=settings.DNS_VERIFY_TIMEOUT)
    try:
        answer = resolver.resolve(name, rtype, search=False)
    except dns.resolver.NXDOMAIN:
        return Lookup(error=f"{name} does not exist (NXDOMAIN)")
    except dns.resolver.NoAnswer:
        return Lookup(error=f"{name} has no {rtype} record")
    except dns.resolver.NoNameservers:
        return Lookup(error=f"no name server answered for {name} (SERVFAIL)", temporary=True)
    except dns.exception.Timeout:
        return Lookup(error=f"the look-up of {name} timed out", temporary=True)
    except dns.exception.DNSException as exc:
        return Lookup(error=f"the look-up of {name} failed: {exc}", temporary=True)
    if rtype == "TXT":
        values = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    else:
        values = [r.target.to_text(omit_final_dot=True).lower() for r in answer]
    return Lookup(values=values)


# --- Reading what was found ----------------------------------------------------------------------

_QUOTES = "\"'"


def dkim_tags(text: str) -> dict[str, str]:
    """The tags of a DKIM key record (RFC 6376 §3.6.1): names in lower case, whitespace removed
    (folding may put it anywhere in a value), quotes that a DNS panel kept tolerated."""
    text = text.strip().strip(_QUOTES)
    tags = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags[name.strip().strip(_QUOTES).lower()] = re.sub(r"[\s\"']", "", value)
    return tags


def dkim_record_matches(text: str, key: DkimKey) -> bool:
    """Whether a TXT record publishes ``key``: the same ``p=``, and ``k=`` (default rsa) and
    ``v=`` (optional) consistent with it; the order of the tags does not matter."""
    tags = dkim_tags(text)
    return (
        tags.get("p") == key.public_key
        and tags.get("k", keys.RSA).lower() == key.algorithm
        and tags.get("v", "DKIM1") == "DKIM1"
    )


def _shown(values: list[str]) -> str:
    return "; ".join(f"“{v}”" for v in values)


def check_dkim_key(key: DkimKey) -> RecordCheck:
    found = lookup(key.host, "TXT")
    common = {"record": DKIM, "host": key.host, "type": "TXT", "expected": key.text_value,
              "found": found.values, "key": key}  # fmt: skip
    if not found.values:
        status = TEMPORARY if found.temporary else MISSING
        return RecordCheck(**common, status=status, detail=f"Not found: {found.error}.")
    records = [v for v in found.values if "p=" in v.replace(" ", "")] or found.values
    if all(dkim_record_matches(v, key) for v in records):
        return RecordCheck(**common, status=VERIFIED, detail="The record matches the key.")
    if any(dkim_record_matches(v, key) for v in records):
        detail = (
            f"{key.host} has several DKIM records ({_shown(records)}); receivers may use "
            f"any of them: keep only “{key.text_value}”."
        )
    else:
        detail = f"{key.host} publishes {_shown(records)}, not this key."
    return RecordCheck(**common, status=MISMATCH, detail=detail)


def check_return_path(domain: Domain) -> RecordCheck:
    host = domain.return_path_domain
    expected = domain.return_path_cname_value.rstrip(".").lower()
    if not host:  # e.g. the service's own domain, whose bounces use BOUNCE_DOMAIN itself
        return RecordCheck(RETURN_PATH, host, "CNAME", expected, [], MISSING,
                           "The domain has no custom Return-Path domain.")  # fmt: skip
    found = lookup(host, "CNAME")
    common = {"record": RETURN_PATH, "host": host, "type": "CNAME", "expected": expected,
              "found": found.values}  # fmt: skip
    if not found.values:
        status = TEMPORARY if found.temporary else MISSING
        return RecordCheck(**common, status=status, detail=f"Not found: {found.error}.")
    if expected in found.values:
        return RecordCheck(**common, status=VERIFIED, detail=f"{host} points to {expected}.")
    return RecordCheck(
        **common,
        status=MISMATCH,
        detail=f"{host} points to {', '.join(found.values)}, not to {expected}.",
    )


def check_spf(domain: Domain) -> RecordCheck:
    include = f"include:{settings.SPF_INCLUDE_DOMAIN}".lower()
    found = lookup(domain.spf_host, "TXT")
    spf = [v for v in found.values if v.strip().strip(_QUOTES).lower().startswith("v=spf1")]
    common = {"record": SPF, "host": domain.spf_host, "type": "TXT",
              "expected": domain.spf_text_value, "found": spf}  # fmt: skip
    if not spf:
        if found.temporary:
            return RecordCheck(**common, status=TEMPORARY, detail=f"Not found: {found.error}.")
        return RecordCheck(
            **common, status=MISSING, detail=f"{domain.spf_host} has no SPF record (v=spf1)."
        )
    if any(include in v.lower().replace('"', "").split() for v in spf):
        return RecordCheck(**common, status=VERIFIED, detail=f"The SPF record has {include}.")
    return RecordCheck(
        **common,
        status=MISMATCH,
        detail=f"The SPF record {_shown(spf)} does not have {include}.",
    )


# --- Recording what was found ---------------------------------------------------------------------


def _note_problem(domain: Domain, record: str, problem: str, was_verified: bool, now) -> None:
    """Keep ``dns_problem`` current for one record: a problem is noted when a record that was
    verified (or already had a problem) fails, or the look-up failed for a while; it is cleared
    once the record is verified. A record never published is not a problem, just not verified."""
    problems = grace.problems(domain.dns_problem)
    if problem and (was_verified or record in problems or problem.startswith(TEMPORARY)):
        problems[record] = problem
    else:
        problems.pop(record, None)
    domain.dns_problem = "\n".join(f"{r}: {p}" for r, p in sorted(problems.items()))
    if not domain.dns_problem:
        domain.dns_problem_since = None
    elif domain.dns_problem_since is None:
        domain.dns_problem_since = now


def _locked(domain: Domain) -> Domain:
    return Domain.objects.select_for_update().get(pk=domain.pk)


def verify_dkim(domain: Domain, now=None) -> list[RecordCheck]:
    """Check the TXT record of every pending and active key; promote the pending keys that are
    seen (revoking the keys they replace) and set ``dkim_verified`` (a verified domain's failed
    check counts towards its grace period: ``domains.grace``)."""
    candidates = list(
        domain.keys.filter(state__in=[DkimKey.State.PENDING, DkimKey.State.ACTIVE]).order_by("pk")
    )
    checks = [check_dkim_key(key) for key in candidates]  # the look-ups: outside the transaction
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked(domain)
        current = {k.pk: k for k in locked.keys.select_for_update()}
        for check in checks:
            key = current.get(check.key.pk)
            if key is None or key.state != DkimKey.State.PENDING or not check.verified:
                continue
            # The end of a rotation: the new key signs from now on, the old one no more.
            for old in current.values():
                if (
                    old.algorithm == key.algorithm
                    and old.state == DkimKey.State.ACTIVE
                    and old.pk != key.pk
                ):
                    old.state, old.revoked_at = DkimKey.State.REVOKED, now
                    old.save(update_fields=["state", "revoked_at"])
            key.state, key.activated_at = DkimKey.State.ACTIVE, now
            key.save(update_fields=["state", "activated_at"])
            check.key = key
        active = [c for c in checks if c.key.pk in current and current[c.key.pk].state == "active"]
        rsa = [c for c in active if c.key.algorithm == keys.RSA]
        was_verified = locked.dkim_verified
        if rsa:  # only temporary failures leave the state as it was
            found, definite = any(c.verified for c in rsa), any(c.definite for c in rsa)
            grace.after_check(locked, DKIM, found, definite, now)
        else:  # no active RSA key: nothing signs as the domain
            locked.dkim_verified = False
            grace.clear(locked, DKIM)
        problem = _worst(active)  # a new domain's unpublished pending key is no problem
        _note_problem(locked, DKIM, problem, was_verified, now)
        locked.dkim_checked_at = now
        locked.save(
            update_fields=["dkim_verified", "dkim_checked_at", "dns_problem", "dns_problem_since",
                           "dkim_failing_since", "dkim_failed_checks", "updated_at"]
        )  # fmt: skip
    _refresh(domain, locked)
    return checks


def _worst(checks: list[RecordCheck]) -> str:
    failing = [c for c in checks if not c.verified]
    if not failing:
        return ""
    check = failing[0]
    prefix = f"{TEMPORARY}: " if check.status == TEMPORARY else ""
    return f"{prefix}{check.host}: {check.detail}"


def _verify_one(domain: Domain, record: str, check: RecordCheck, stamp: str, now) -> None:
    flag = grace.FLAGS[record]
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked(domain)
        was_verified = getattr(locked, flag)
        if record in grace.GATED:
            grace.after_check(locked, record, check.verified, check.definite, now)
        elif check.definite:
            setattr(locked, flag, check.verified)
        problem = "" if check.verified else _worst([check])
        _note_problem(locked, record, problem, was_verified, now)
        setattr(locked, stamp, now)
        locked.save(update_fields=[flag, stamp, "dns_problem", "dns_problem_since",
                                   *grace.FIELDS, "updated_at"])  # fmt: skip
    _refresh(domain, locked)


def verify_return_path(domain: Domain, now=None) -> RecordCheck:
    """The custom Return-Path's CNAME (a verified one that fails has a grace period)."""
    check = check_return_path(domain)
    _verify_one(domain, RETURN_PATH, check, "return_path_checked_at", now)
    return check


def verify_spf(domain: Domain, now=None) -> RecordCheck:
    """Informational (as in Postmark): SPF never decides who may send, and has no grace."""
    check = check_spf(domain)
    _verify_one(domain, SPF, check, "spf_checked_at", now)
    return check


def verify_domain(domain: Domain, now=None) -> list[RecordCheck]:
    """Every check of a domain: DKIM (each key), Return-Path, SPF."""
    return [*verify_dkim(domain, now), verify_return_path(domain, now), verify_spf(domain, now)]


def _refresh(domain: Domain, saved: Domain) -> None:
    """Give the caller's instance the values just saved."""
    for f in Domain._meta.concrete_fields:
        setattr(domain, f.attname, getattr(saved, f.attname))
    if hasattr(domain, "_prefetched_objects_cache"):
        domain._prefetched_objects_cache.pop("keys", None)
