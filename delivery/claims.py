"""Claiming recipients: which recipients are waiting and due, and the lease a worker takes them by.

A delivery task first *takes* its messages' due recipients (``Claim.take_all``: a lease, an attempt
counted and the status ``sending``, in one conditional UPDATE through ``core.leases``), so no two
workers ever send to the same recipient; it renews the lease of the message in progress once a
quarter of it has gone (checked before every connection, every SMTP transaction and DATA), and
writes each result only while it still holds the recipient. A lease that runs out frees the
recipient for another worker: the task died, or is still busy with an earlier message (a slow or
silent relay) while this one waited its turn.

Only an attempt that started counts as one, and only one cut short counts an error. The rows one
take leased share its time as ``updated_at`` (a renewal keeps it, a result replaces it), and a task
works through its messages in order: of the rows of one take still unfinished, the message with
the lowest id is the one the task was on (or about to start); the later ones never started. So
when a lease that ran out is taken again, the message the task was on counts an error (a worker
that keeps dying on it gives it up after ``DELIVERY_ERROR_LIMIT``: in doubt, it is sent again,
at least once, as MTAs do; a duplicate needs a death in the milliseconds between the remote 250
and the commit), and a message that merely waited its turn counts neither an error nor the
attempt its first take counted. A task that meets an unavailable database gives back what it
holds (``release``) before it is retried: the database failed, not the messages.
"""

import logging
from collections import defaultdict
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import connections
from django.db.models import F, Min, Q
from django.utils import timezone

from core import leases
from messages.events import record_message_event_with
from messages.models import OutboundMessage, Recipient

log = logging.getLogger(__name__)

TERMINAL = {Recipient.Status.DELIVERED, Recipient.Status.BOUNCED, Recipient.Status.FAILED,
            Recipient.Status.SANDBOXED}  # fmt: skip
# Waiting to be sent: new, deferred, or in doubt (its worker died during DATA).
WAITING = [Recipient.Status.PENDING, Recipient.Status.DEFERRED, Recipient.Status.SENDING]


def lease_seconds() -> float:
    """How long a worker holds the recipients it took, renewed before every transaction and
    before DATA: long enough for DATA's three waits (the DATA reply, sending, the final reply),
    each bounded by OUTBOUND_TIMEOUT. A recipient whose worker died is free again after it."""
    return settings.OUTBOUND_TIMEOUT * 4


def claimable(recipients, now):
    """The recipients waiting and due, that nobody holds."""
    due = recipients.filter(status__in=WAITING).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    return leases.free(due, now)


class Claim:
    """The recipients of one message this worker has taken, and the lease it holds them by.

    Every write of a result is conditional on the lease (``finish``): a worker that lost a
    recipient (its lease ran out and another worker took it) can no longer record anything
    for it, and ``renew`` tells it which ones it still holds before it sends."""

    def __init__(self, message: OutboundMessage, recipients: list[Recipient], until):
        self.message = message
        self.until = until
        self._taken = [r.pk for r in recipients]
        self._held = {r.pk: r for r in recipients}
        self._in_doubt: set[int] = set()  # sent, but the result could not be recorded

    @classmethod
    def take(cls, message: OutboundMessage, now=None) -> "Claim":
        """Take the message's due recipients (``take_all`` for one message)."""
        return cls.take_all([message], now)[message.pk]

    @classmethod
    def take_all(cls, messages: list[OutboundMessage], now=None) -> dict[int, "Claim"]:
        """Take the due recipients of several messages at once: one conditional UPDATE leases
        them and counts an attempt on each; those another worker took first are left out. Of
        the recipients whose last lease ran out unfinished, those of the message their task was
        on count an error as well, the others (which waited their turn) no attempt: see the
        module's docstring. Returns a claim per message (empty when nothing was due)."""
        now = now or timezone.now()
        due = claimable(Recipient.objects.filter(message__in=[m.pk for m in messages]), now)
        rows = {pk: (message_id, leased_until, taken_at) for pk, message_id, leased_until, taken_at
                in due.values_list("pk", "message_id", "leased_until", "updated_at")}  # fmt: skip
        by_message: dict[int, list[Recipient]] = defaultdict(list)
        until = None
        if rows:
            cut_short, waited = _abandoned(rows)
            seconds = lease_seconds()
            leases.take(
                due.filter(pk__in=list(rows)), seconds, now, count_attempt=True,
                status=Recipient.Status.SENDING, updated_at=now,
            )  # fmt: skip
            until = now + timedelta(seconds=seconds)
            ours = Recipient.objects.filter(pk__in=list(rows), leased_until=until)
            if cut_short:
                ours.filter(pk__in=cut_short).update(errors=F("errors") + 1)
            if waited:
                ours.filter(pk__in=waited).update(attempts=F("attempts") - 1)
            for recipient in ours.order_by("pk"):
                by_message[recipient.message_id].append(recipient)
        return {
            m.pk: cls(m, by_message[m.pk], until if by_message[m.pk] else None) for m in messages
        }

    def __bool__(self) -> bool:
        return bool(self._held)

    def recipients(self) -> list[Recipient]:
        """The recipients still held, without a result yet."""
        return list(self._held.values())

    def holds(self, recipient: Recipient) -> bool:
        return recipient.pk in self._held

    def _mine(self, pks):
        return Recipient.objects.filter(pk__in=list(pks), leased_until=self.until)

    def _update_statement(self, pks: list, **fields) -> tuple[str, list]:
        """``self._mine(pks).update(**fields)`` as SQL and parameters, built without the ORM: it
        runs for every recipient sent, where the ORM's query building would cost more than the
        statement itself."""
        connection = connections[Recipient.objects.db]
        meta = Recipient._meta
        params = [
            meta.get_field(name).get_db_prep_save(v, connection) for name, v in fields.items()
        ]
        params += pks
        params.append(meta.get_field("leased_until").get_db_prep_save(self.until, connection))
        return _update_sql(connection.vendor, tuple(fields), len(pks)), params

    def reload(self) -> None:
        """Hold exactly what the database says this claim holds (after a failed transaction
        rolled back results that were believed recorded)."""
        self._held = {r.pk: r for r in self._mine(self._taken).order_by("pk")}

    def renew(self) -> None:
        """Extend the lease of every recipient still held once a quarter of it has gone (so
        that DATA always starts with three quarters left); forget those lost meanwhile."""
        now = timezone.now()
        seconds = lease_seconds()
        if not self._held or self.until - now > timedelta(seconds=seconds * 3 / 4):
            return
        leases.lease(self._mine(self._held), seconds, now)
        self.until = now + timedelta(seconds=seconds)
        self._forget_lost()

    def _forget_lost(self) -> None:
        kept = set(self._mine(self._held).values_list("pk", flat=True))
        for pk in set(self._held) - kept:
            log.warning("recipient %s of %s was taken by another worker", pk, self.message)
            del self._held[pk]

    def still_held(self, recipients: list[Recipient]) -> list[Recipient]:
        """Those of ``recipients`` this worker still holds, checked just before DATA: the lease
        is renewed first if a quarter of it has gone, and that conditional UPDATE leaves out any
        recipient taken over meanwhile. While more than three quarters are left no statement is
        needed: other workers take only leases that have run out (this relies on the clocks of
        the hosts agreeing to well within a quarter of the lease, as NTP keeps them)."""
        self.renew()
        return [r for r in recipients if self.holds(r)]

    def finish(self, recipient: Recipient, event: str = "", **fields) -> bool:
        """Record a result and end the lease, if the recipient is still held; returns whether
        it was. With ``event``, that event of the message (its details the reply) is recorded
        with the result and committed with it (``record_message_event_with``: one statement on
        PostgreSQL, for every recipient delivered); without, call this inside the transaction
        that records the result's event or bounce. A statement that fails leaves the recipient
        held, so that the same result can be recorded again."""
        fields.setdefault("updated_at", timezone.now())
        if recipient.pk not in self._held:
            return False
        sql, params = self._update_statement([recipient.pk], leased_until=None, **fields)
        if event:
            recorded = record_message_event_with(
                (sql, params), self.message, event, recipient.email,
                details=fields.get("last_reply", ""), occurred_at=fields["updated_at"],
            )  # fmt: skip
        else:
            with connections[Recipient.objects.db].cursor() as cursor:
                cursor.execute(sql, params)
                recorded = cursor.rowcount > 0
        del self._held[recipient.pk]
        if not recorded:
            return False
        for name, value in fields.items():
            setattr(recipient, name, value)
        recipient.leased_until = None
        return True

    def in_doubt(self, recipient: Recipient) -> None:
        """The recipient was sent to, but its result could not be recorded: ``release`` leaves
        it held, so that it is sent again only once the lease has run out (in doubt)."""
        self._in_doubt.add(recipient.pk)

    def release(self) -> int:
        """Give back the recipients taken and still unfinished (the database failed while they
        were being sent to, or its result was rolled back): their lease ends, so they are taken
        again at once, with no error counted (the database failed, not the message). Returns
        how many were given back."""
        pks = [pk for pk in self._taken if pk not in self._in_doubt]
        released = leases.release(self._mine(pks)) if pks else 0
        self._held = {}
        return released


def _abandoned(rows: dict) -> tuple[list, list]:
    """Of ``rows`` (pk: message id, lease, ``updated_at``), those whose lease ran out unfinished:
    the ones of the message their take's task was on (the lowest message id among that take's
    rows still leased and ``sending``), and the others, which only waited their turn."""
    abandoned = {pk: row for pk, row in rows.items() if row[1] is not None}
    if not abandoned:
        return [], []
    takes = {taken_at for _, _, taken_at in abandoned.values()}
    first = dict(
        Recipient.objects.filter(
            updated_at__in=takes, status=Recipient.Status.SENDING, leased_until__isnull=False
        )
        .values("updated_at")
        .annotate(first=Min("message_id"))
        .values_list("updated_at", "first")
    )
    cut_short = [pk for pk, (message_id, _, taken_at) in abandoned.items()
                 if first.get(taken_at) == message_id]  # fmt: skip
    return cut_short, [pk for pk in abandoned if pk not in cut_short]


@lru_cache(maxsize=64)
def _update_sql(vendor: str, names: tuple[str, ...], count: int) -> str:
    """``UPDATE recipient SET <names> WHERE pk IN (<count>) AND leased_until = <lease>``."""
    quote, meta = connections[Recipient.objects.db].ops.quote_name, Recipient._meta
    columns = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in names)
    # Only names from the model's own metadata go into the statement; values are parameters.
    return (
        f"UPDATE {quote(meta.db_table)} SET {columns} "  # noqa: S608
        f"WHERE {quote(meta.pk.column)} IN ({', '.join(['%s'] * count)}) "
        f"AND {quote(meta.get_field('leased_until').column)} = %s"
    )
