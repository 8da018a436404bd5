"""Authentication-failure throttling shared by every gateway process.

Failed logins are counted per client address (IPv6 by its /64, which one host usually holds
whole) and per user name, in the table ``AuthFailureCount``: each failure adds one to the row of
its subject and time bucket (a tenth of the window) with one atomic upsert, so ``runsmtp
--processes N`` or several gateway hosts on one database share the allowance instead of
multiplying it. A successful login clears nothing: an attacker who also holds one valid
credential cannot reset the count between guesses.

User names are never stored: the subject is a keyed digest (``core.crypto.tag``), because with
a server API token the user name *is* the token.

The database work is blocking, so :class:`SharedThrottle` runs it in the gateway's thread pool;
it remembers in memory which subjects are blocked until the next bucket boundary (the earliest a
block can lift), so a throttled client is refused without a query each time.
"""

import ipaddress
import logging
import math
import time

from django.db import DatabaseError, connection, transaction
from django.db.models import Sum

from core import crypto
from smtpgw.models import AuthFailureCount

log = logging.getLogger("smtpgw")

BUCKETS_PER_WINDOW = 10
USERNAME_TAG_PURPOSE = b"smtp auth failure user name"

ADDRESS_THROTTLED = "421 4.7.0 Too many failed authentication attempts, try again later"
USERNAME_THROTTLED = (
    "454 4.7.0 Too many failed authentication attempts for this user name, try again later"
)
UNAVAILABLE = "454 4.7.0 Temporary authentication failure, try again later"


def address_subject(address: str) -> str:
    """The throttle subject of a client address: the address, or the /64 of an IPv6 one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "ip:" + address[:60]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return "ip:" + str(ip.ipv4_mapped)
        return "ip:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return "ip:" + str(ip)


def username_subject(username: str) -> str:
    """The throttle subject of a user name: a keyed digest, never the name itself."""
    text = username.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return "user:" + crypto.tag(USERNAME_TAG_PURPOSE, text, length=32)


def bucket_seconds(window: float) -> int:
    return max(1, math.ceil(window / BUCKETS_PER_WINDOW))


def count_failure(subjects: list[str], window: float, now: float | None = None) -> dict[str, int]:
    """Add one failure to each subject's current bucket (atomically, whichever process does it)
    and return each subject's failures within the window, this one included."""
    now = time.time() if now is None else now
    step = bucket_seconds(window)
    start = int(now // step * step)
    table = connection.ops.quote_name(AuthFailureCount._meta.db_table)
    # INSERT ... ON CONFLICT DO UPDATE: one statement, no lost update, on SQLite and PostgreSQL.
    statement = (
        f"INSERT INTO {table} (subject, bucket_start, count) VALUES (%s, %s, 1) "  # noqa: S608
        f"ON CONFLICT (subject, bucket_start) DO UPDATE SET count = {table}.count + 1"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        for subject in subjects:
            cursor.execute(statement, [subject, start])
    return recent_failures(subjects, window, now)


def recent_failures(subjects: list[str], window: float, now: float | None = None) -> dict[str, int]:
    """Each subject's failures in the buckets that started within the last ``window`` seconds."""
    now = time.time() if now is None else now
    rows = (
        AuthFailureCount.objects.filter(subject__in=subjects, bucket_start__gt=now - window)
        .values("subject")
        .annotate(total=Sum("count"))
    )
    found = {row["subject"]: row["total"] for row in rows}
    return {subject: found.get(subject, 0) for subject in subjects}


def blocked_subjects(
    window: float, limit: int, username_limit: int, now: float | None = None
) -> set[str]:
    """Every subject at or over its limit within the window, in one query (a gateway process
    refreshes this snapshot instead of reading the counters on every AUTH)."""
    now = time.time() if now is None else now
    limits = [n for n in (limit, username_limit) if n > 0]
    if not limits:
        return set()
    rows = (
        AuthFailureCount.objects.filter(bucket_start__gt=now - window)
        .values("subject")
        .annotate(total=Sum("count"))
        .filter(total__gte=min(limits))
        .values_list("subject", "total")
    )
    return {
        subject
        for subject, total in rows
        if total >= (limit if subject.startswith("ip:") else username_limit) > 0
    }


def purge_expired(window: float, now: float | None = None) -> int:
    """Delete the buckets no window counts any more; returns how many rows went."""
    now = time.time() if now is None else now
    deleted, _ = AuthFailureCount.objects.filter(bucket_start__lte=now - window).delete()
    return deleted


def _reconnecting(func, *args):
    """Run ``func`` in a pool thread; after a database error, drop the thread's connection so
    that the next call reconnects (the database may have gone away and come back)."""
    try:
        return func(*args)
    except DatabaseError:
        connection.close()
        raise


class SharedThrottle:
    """The gateway's view of the shared counters: at most ``limit`` failures per client address
    and ``username_limit`` per user name within ``window`` seconds (a limit of 0 disables it).

    ``run_blocking`` runs a function in the thread pool (``Gateway.run_blocking``).
    """

    def __init__(
        self,
        run_blocking,
        limit: int,
        window: float,
        username_limit: int,
        clock=None,
        refresh: float = 0.0,
    ):
        self.run_blocking = run_blocking
        self.limit = limit
        self.window = window
        self.username_limit = username_limit
        self.refresh = refresh
        self._clock = clock or time.time
        self._blocked_until: dict[str, float] = {}
        self._next_purge = 0.0
        self._snapshot_at = -math.inf

    def _limits(self, address: str, username: str) -> dict[str, int]:
        limits = {}
        if self.limit > 0:
            limits[address_subject(address)] = self.limit
        if username and self.username_limit > 0:
            limits[username_subject(username)] = self.username_limit
        return limits

    def _remember(self, counts: dict[str, int], limits: dict[str, int]) -> set[str]:
        """Note which subjects are at their limit; returns them."""
        now = self._clock()
        step = bucket_seconds(self.window)
        next_boundary = (now // step + 1) * step
        if len(self._blocked_until) > 100_000:  # bound memory under an address-spraying attack
            self._blocked_until.clear()
        blocked = {subject for subject, count in counts.items() if count >= limits[subject]}
        for subject in blocked:
            self._blocked_until[subject] = next_boundary
        return blocked

    def _known_blocked(self, subject: str) -> bool:
        until = self._blocked_until.get(subject)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._blocked_until[subject]
        return False

    def blocked(self, address: str) -> bool:
        """Whether this process already knows the address is blocked (no query: for the moment
        a connection is made, on the event loop)."""
        return self.limit > 0 and self._known_blocked(address_subject(address))

    async def blocked_now(self, address: str, username: str = "") -> str:
        """'address' or 'username' when that subject is at its limit in the shared counters,
        else ''. Raises when the counters cannot be read (the caller refuses, temporarily)."""
        limits = self._limits(address, username)
        for subject in limits:
            if self._known_blocked(subject):
                return "address" if subject.startswith("ip:") else "username"
        if not limits:
            return ""
        if self.refresh > 0:
            await self._refresh_snapshot()
            for subject in limits:
                if self._known_blocked(subject):
                    return "address" if subject.startswith("ip:") else "username"
            return ""
        counts = await self.run_blocking(_reconnecting, recent_failures, list(limits), self.window)
        blocked = self._remember(counts, limits)
        if any(subject.startswith("ip:") for subject in blocked):
            return "address"
        return "username" if blocked else ""

    async def _refresh_snapshot(self) -> None:
        """Learn, at most once per ``refresh`` seconds, which subjects other processes have
        blocked: one query per interval instead of one per AUTH (which halved the gateway's
        throughput). Failures this process records count at once; another process's are seen
        within ``refresh`` seconds."""
        now = self._clock()
        if now - self._snapshot_at < self.refresh:
            return
        self._snapshot_at = now  # concurrent logins meanwhile use the snapshot there is
        try:
            blocked = await self.run_blocking(
                _reconnecting, blocked_subjects, self.window, self.limit, self.username_limit
            )
        except Exception:
            self._snapshot_at = -math.inf  # the next login reads again
            raise
        self._remember({subject: 1 for subject in blocked}, dict.fromkeys(blocked, 1))

    async def record_failure(self, address: str, username: str = "") -> None:
        """Count a failed login for the address and the user name; now and then, purge the
        buckets that have left the window. Errors are logged: the client has its 535 anyway."""
        limits = self._limits(address, username)
        if not limits:
            return
        try:
            counts = await self.run_blocking(
                _reconnecting, count_failure, list(limits), self.window
            )
            self._remember(counts, limits)
            if self._clock() >= self._next_purge:
                self._next_purge = self._clock() + bucket_seconds(self.window)
                await self.run_blocking(_reconnecting, purge_expired, self.window)
        except Exception:
            log.exception("could not record an authentication failure")

    async def refusal(self, address: str, username: str) -> str:
        """The reply refusing this login attempt before its secret is checked, or '' to go on:
        421 (the caller closes the connection) when the address is blocked, 454 when the user
        name is (the attempt still counts against the address), 454 when the counters cannot
        be read (refusing is safer than guessing without a limit)."""
        try:
            blocked = await self.blocked_now(address, username)
        except Exception:
            log.exception("could not read the authentication-failure counters")
            return UNAVAILABLE
        if blocked == "address":
            return ADDRESS_THROTTLED
        if blocked == "username":
            await self.record_failure(address)
            return USERNAME_THROTTLED
        return ""
