"""Delivery: relay each outbound message and record what happened to every recipient.

A worker first *takes* the message's due recipients (``Claim``: a lease, an attempt counted and
the status ``sending``, in one conditional UPDATE through ``core.leases``), so no two
workers ever send to the same recipient; it renews the lease once a quarter of it has gone
(checked before every SMTP transaction and before DATA), and writes each result only while it
still holds the recipient. A lease that runs out frees the recipient: one left ``sending`` by a
worker that died is *in doubt* and is sent again (at least once, as MTAs do; a duplicate needs
a death in the milliseconds between the remote 250 and the commit).

Per recipient: 2xx → Delivery event; 4xx or no connection → retried on a backoff schedule, with a
Transient (or DnsError) bounce at the first deferral and a SoftBounce when giving up; 5xx → a
bounce, by the stage that refused (``bounces.reports.classify_smtp_failure``): at RCPT of the
type the reply gives, deactivating the address only when the reply is about the address; at MAIL
FROM or DATA for every recipient of the transaction, deactivating no one. A domain that does not
exist or publishes a null MX bounces at once; so does a non-ASCII address when the next hop does
not offer SMTPUTF8. An unexpected error is the message's own: counted on its recipients, retried,
and after ``DELIVERY_ERROR_LIMIT`` of them the recipients are ``failed`` with a SoftBounce.
"""

import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections import defaultdict
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from bounces.replies import SmtpFailure, Stage, classify_smtp_failure
from bounces.services import record_bounce, storable
from bounces.verp import verp_address
from core import leases
from core.logcontext import about_message
from core.mime import first_address
from delivery.transport import (
    DnsFailure,
    Host,
    PermanentDnsFailure,
    UnsendableAddress,
    address_of,
    destination_of,
    envelope_address,
    hosts_for,
)
from domains.signing import return_path_domain_for, signature_for
from messages import metrics
from messages.events import record_bounce_event, record_message_event_with
from messages.models import MessageEvent, OutboundMessage, Recipient
from servers.models import DeliveryType
from streams.models import Suppression
from streams.suppressions import suppress
from tracking.tracking import apply_tracking

log = logging.getLogger(__name__)

TERMINAL = {Recipient.Status.DELIVERED, Recipient.Status.BOUNCED, Recipient.Status.FAILED,
            Recipient.Status.SANDBOXED}  # fmt: skip
# Waiting to be sent: new, deferred, or in doubt (its worker died during DATA).
WAITING = [Recipient.Status.PENDING, Recipient.Status.DEFERRED, Recipient.Status.SENDING]
# The database itself is unreachable: not the message's fault, so the task is retried whole.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


class Transcript(list):
    """The SMTP conversation, for bounce dumps."""

    def client(self, line: str) -> None:
        self.append(f"C: {line}")

    def server(self, code: int, text: bytes | str) -> None:
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for line in storable(text).splitlines() or [""]:
            self.append(f"S: {code} {line}")

    def text(self) -> str:
        return "\r\n".join(self)


# --- connections ----------------------------------------------------------------------------------


class ConnectionPool:
    """Open SMTP connections per host, reused across messages; at most N at once per host."""

    def __init__(self, per_host: int, idle_seconds: float = 30.0):
        self.per_host = per_host
        self.idle_seconds = idle_seconds
        self._idle: dict[str, list[tuple[float, smtplib.SMTP]]] = defaultdict(list)
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def _slot(self, key: str) -> threading.BoundedSemaphore:
        with self._lock:
            if key not in self._slots:
                self._slots[key] = threading.BoundedSemaphore(self.per_host)
            return self._slots[key]

    def acquire(self, host: Host) -> smtplib.SMTP:
        self._slot(host.key).acquire()
        try:
            while True:
                with self._lock:
                    idle = self._idle[host.key]
                    entry = idle.pop() if idle else None
                if entry is None:
                    return open_connection(host)
                since, connection = entry
                if time.monotonic() - since < self.idle_seconds:
                    try:
                        if connection.rset()[0] == 250:
                            return connection
                    except (smtplib.SMTPException, OSError):
                        pass
                _close(connection)
        except BaseException:
            self._slot(host.key).release()
            raise

    def release(self, host: Host, connection: smtplib.SMTP | None, reusable: bool) -> None:
        if connection is not None:
            if reusable:
                with self._lock:
                    self._idle[host.key].append((time.monotonic(), connection))
            else:
                _close(connection)
        self._slot(host.key).release()


def _close(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        connection.close()


def _client_tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        # MX hosts often present certificates for other names; opportunistic TLS (RFC 7435)
        # still encrypts. A relay that requires TLS is verified unless configured otherwise.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def open_connection(host: Host) -> smtplib.SMTP:
    address = address_of(host.host)
    timeout = settings.OUTBOUND_TIMEOUT
    verify = settings.OUTBOUND_TLS_VERIFY and host.starttls == "require"
    if host.implicit_tls:
        connection = smtplib.SMTP_SSL(
            address, host.port, local_hostname=settings.OUTBOUND_HELO, timeout=timeout,
            context=_client_tls_context(settings.OUTBOUND_TLS_VERIFY),
        )  # fmt: skip
    else:
        connection = smtplib.SMTP(
            address, host.port, local_hostname=settings.OUTBOUND_HELO, timeout=timeout
        )
    try:
        connection.ehlo_or_helo_if_needed()
        if not host.implicit_tls and host.starttls != "never" and connection.has_extn("starttls"):
            connection.starttls(context=_client_tls_context(verify))
            connection.ehlo()
        elif host.starttls == "require" and not host.implicit_tls:
            raise smtplib.SMTPNotSupportedError("the relay does not offer STARTTLS")
        if host.username:
            connection.login(host.username, host.password)
    except BaseException:
        connection.close()
        raise
    return connection


_pool: ConnectionPool | None = None


def pool() -> ConnectionPool:
    global _pool
    if _pool is None:
        _pool = ConnectionPool(settings.OUTBOUND_CONNECTIONS_PER_DESTINATION)
    return _pool


# --- claiming recipients --------------------------------------------------------------------------


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

    @classmethod
    def take(cls, message: OutboundMessage, now=None) -> "Claim":
        """Take the message's due recipients (``take_all`` for one message)."""
        return cls.take_all([message], now)[message.pk]

    @classmethod
    def take_all(cls, messages: list[OutboundMessage], now=None) -> dict[int, "Claim"]:
        """Take the due recipients of several messages at once: one conditional UPDATE leases
        them and counts an attempt on each; those another worker took first are left out. A
        recipient whose last lease ran out unfinished (its worker died or stalled) counts an
        error as well. Returns a claim per message (empty when nothing was due)."""
        now = now or timezone.now()
        due = claimable(Recipient.objects.filter(message__in=[m.pk for m in messages]), now)
        rows = {pk: leased_until for pk, leased_until in due.values_list("pk", "leased_until")}
        by_message: dict[int, list[Recipient]] = defaultdict(list)
        until = None
        if rows:
            seconds = lease_seconds()
            leases.take(
                due.filter(pk__in=list(rows)), seconds, now, count_attempt=True,
                status=Recipient.Status.SENDING,
            )  # fmt: skip
            until = now + timedelta(seconds=seconds)
            ours = Recipient.objects.filter(pk__in=list(rows), leased_until=until)
            abandoned = [pk for pk, leased_until in rows.items() if leased_until is not None]
            if abandoned:
                ours.filter(pk__in=abandoned).update(errors=F("errors") + 1)
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
        that records the result's event or bounce."""
        fields.setdefault("updated_at", timezone.now())
        if recipient.pk not in self._held:
            return False
        del self._held[recipient.pk]
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
        if not recorded:
            return False
        for name, value in fields.items():
            setattr(recipient, name, value)
        recipient.leased_until = None
        return True


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


# --- the task's work ------------------------------------------------------------------------------


def deliver_message(outbound_id: int) -> str:
    """Deliver the due recipients of one message; returns the message's status. An unexpected
    error is this message's alone: it is counted on the recipients and never raised, except an
    unreachable database (the task is retried)."""
    return deliver_messages([outbound_id]).get(outbound_id, "missing")


def deliver_messages(outbound_ids: list[int]) -> dict[int, str]:
    """Deliver the due recipients of several messages; returns each message's status. The
    messages are read in one query, their due recipients taken in one UPDATE
    (``Claim.take_all``) and their statuses refreshed in one pass; in between each message is
    sent on its own, over the pooled connections, and an unexpected error in one is that
    message's alone (counted on its recipients, never raised). An unreachable database is
    raised: the task is retried."""
    messages = list(
        OutboundMessage.objects.select_related("server", "stream")
        .filter(pk__in=outbound_ids)
        .order_by("pk")
    )
    statuses, live = {}, []
    for message in messages:
        if message.server.delivery_type == DeliveryType.SANDBOX:
            with about_message(message.message_id, message.server_id, message.stream.stream_id):
                statuses[message.pk] = _sandbox(message)
        else:
            live.append(message)
    claims = Claim.take_all(live) if live else {}
    for message in live:
        with about_message(message.message_id, message.server_id, message.stream.stream_id):
            _deliver_claim(claims[message.pk])
    statuses.update(refresh_statuses(live))
    return statuses


def _deliver_claim(claim: Claim) -> None:
    if not claim:
        return
    try:
        _give_up_on_repeated_errors(claim)
        _deliver_claimed(claim)
    except DATABASE_UNAVAILABLE:
        raise
    except Exception as exc:
        log.exception("delivering message %s failed", claim.message.message_id)
        unexpected_error(claim, exc)


def _deliver_claimed(claim: Claim) -> None:
    message = claim.message
    by_destination: dict[str, list[Recipient]] = defaultdict(list)
    for recipient in claim.recipients():
        try:
            envelope_address(recipient.email)
            destination = destination_of(recipient.email)
        except UnsendableAddress as exc:
            failure = SmtpFailure("BadEmailAddress", permanent=True, deactivates=False)
            bounced(claim, recipient, failure, f"Not sent: {exc}", Transcript())
            continue
        by_destination[destination].append(recipient)
    for destination, recipients in by_destination.items():
        batches = [[r] for r in recipients] if tracked(message) else [recipients]
        for batch in batches:
            _deliver_to(claim, destination, batch)


def _sandbox(message: OutboundMessage) -> str:
    """A sandbox server records the message and delivers nothing."""
    with transaction.atomic():
        message.deliveries.filter(status=Recipient.Status.PENDING).update(
            status=Recipient.Status.SANDBOXED, last_reply="Sandbox server: not delivered"
        )
        message.status = OutboundMessage.Status.SANDBOXED
        message.save(update_fields=["status"])
    return message.status


def refresh_status(message: OutboundMessage) -> str:
    return refresh_statuses([message])[message.pk]


def refresh_statuses(messages: list[OutboundMessage]) -> dict[int, str]:
    """Bring each message's status in line with its recipients' (one read for all of them,
    one UPDATE per status that changed); returns the statuses."""
    if not messages:
        return {}
    seen: dict[int, set[str]] = defaultdict(set)
    rows = Recipient.objects.filter(message__in=[m.pk for m in messages]).values_list(
        "message_id", "status"
    )
    for message_id, status in rows:
        seen[message_id].add(status)
    statuses, changed = {}, defaultdict(list)
    for message in messages:
        status = status_of(seen[message.pk])
        statuses[message.pk] = status
        if status != message.status:
            message.status = status
            changed[status].append(message.pk)
    for status, pks in changed.items():
        OutboundMessage.objects.filter(pk__in=pks).update(status=status)
    return statuses


def status_of(recipient_statuses: set[str]) -> str:
    """A message's status from its recipients': queued while any is waiting."""
    if recipient_statuses - TERMINAL:
        return OutboundMessage.Status.QUEUED
    if Recipient.Status.DELIVERED in recipient_statuses:
        return OutboundMessage.Status.SENT
    if recipient_statuses == {Recipient.Status.SANDBOXED}:
        return OutboundMessage.Status.SANDBOXED
    if Recipient.Status.BOUNCED in recipient_statuses:
        return OutboundMessage.Status.BOUNCED
    return OutboundMessage.Status.FAILED


def _deliver_to(claim: Claim, destination: str, recipients: list[Recipient]) -> None:
    transcript = Transcript()
    try:
        hosts = hosts_for(destination)
    except PermanentDnsFailure as exc:
        failure = SmtpFailure("HardBounce", permanent=True, deactivates=True)
        transcript.append(f"-- {exc}")
        for recipient in recipients:
            bounced(claim, recipient, failure, f"{exc.status} {exc}", transcript)
        return
    except DnsFailure as exc:
        for recipient in recipients:
            defer(claim, recipient, str(exc), transcript, dns=True)
        return
    last_error = "no mail host could be reached"
    for host in hosts:
        recipients = [r for r in recipients if claim.holds(r)]
        if not recipients:
            return
        transcript.append(f"-- connecting to {host.host}:{host.port}")
        try:
            connection = pool().acquire(host)
        except DnsFailure as exc:
            last_error = str(exc)
            continue
        except (OSError, smtplib.SMTPException) as exc:
            # Refused before any recipient was named (connection, TLS, relay authentication):
            # not the recipients' fault, so they are retried, never bounced.
            last_error = f"{host.host}:{host.port}: {_describe(exc)}"
            transcript.append(f"-- {last_error}")
            continue
        reusable = False
        try:
            reusable = _transaction(claim, connection, host, recipients, transcript)
            return
        except (OSError, smtplib.SMTPException) as exc:
            last_error = f"{host.host}:{host.port}: {_describe(exc)}"
            transcript.append(f"-- {last_error}")
        finally:
            pool().release(host, connection, reusable)
    for recipient in recipients:
        if claim.holds(recipient):
            defer(claim, recipient, last_error, transcript)


def _describe(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace')}"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or exc.__class__.__name__


def _transaction(claim: Claim, connection, host: Host, recipients, transcript) -> bool:
    """One SMTP transaction for the recipients; returns whether the connection can be reused."""
    message = claim.message
    claim.renew()
    smtputf8_offered = connection.has_extn("smtputf8")
    envelope: list[tuple[Recipient, str]] = []
    needs_smtputf8 = False
    for recipient in recipients:
        if not claim.holds(recipient):
            continue
        address, utf8 = envelope_address(recipient.email)
        if utf8 and not smtputf8_offered:
            no_smtputf8(claim, recipient, host, transcript)
            continue
        needs_smtputf8 = needs_smtputf8 or utf8
        envelope.append((recipient, address))
    if not envelope:
        return True
    return_path = return_path_domain_for(sender_address(message))
    sender = verp_address(str(message.message_id), return_path)
    options = ["BODY=8BITMIME"] if connection.has_extn("8bitmime") else []
    if needs_smtputf8:
        options.append("SMTPUTF8")
        connection.command_encoding = "utf-8"  # as smtplib's mail() does; rset() resets it
    # Not smtplib's mail() and rcpt(): they re-parse each address as a header would (costlier
    # than any other step but signing), and can change it.
    commands = [("MAIL", " ".join([f"FROM:<{sender}>", *options]))]
    commands += [("RCPT", f"TO:<{address}>") for _, address in envelope]
    send = _pipelined if connection.has_extn("pipelining") else _one_by_one
    replies = send(connection, commands, transcript)
    code, text = replies[0]
    if code >= 400:
        for recipient, _ in envelope:
            apply_reply(claim, recipient, Stage.MAIL, code, text, transcript)
        return code != 421
    accepted = []
    for (recipient, _), (code, text) in zip(envelope, replies[1:], strict=True):
        if code in (250, 251):
            accepted.append(recipient)
        else:
            apply_reply(claim, recipient, Stage.RCPT, code, text, transcript)
    if not accepted:
        connection.rset()
        return True
    sending = claim.still_held(accepted)
    if len(sending) < len(accepted):
        # Some were taken over while this transaction went on: never send them a copy.
        transcript.client("RSET")
        connection.rset()
        return _transaction(claim, connection, host, sending, transcript) if sending else True
    transcript.client("DATA")
    content = message_bytes(message, accepted[0].email if tracked(message) else None)
    try:
        code, text = connection.data(content)
    except smtplib.SMTPDataError as exc:  # the DATA command itself was refused
        code, text = exc.smtp_code, exc.smtp_error
    transcript.server(code, text)
    for recipient in accepted:
        apply_reply(claim, recipient, Stage.DATA, code, text, transcript)
    return code != 421


def _pipelined(connection: smtplib.SMTP, commands: list[tuple[str, str]], transcript) -> list:
    """MAIL FROM and the RCPT TOs written at once, then their replies read in order (RFC 2920,
    where the server offers PIPELINING): one round trip instead of one per command. When MAIL
    is refused the server refuses the RCPTs too; their replies are read all the same, unless it
    closed the connection after refusing MAIL (a 421), whose reply then stands for all."""
    for verb, argument in commands:
        transcript.client(f"{verb} {argument}")
    connection.send("".join(f"{verb} {argument}\r\n" for verb, argument in commands))
    replies = []
    try:
        for _ in commands:
            replies.append(connection.getreply())
    except smtplib.SMTPServerDisconnected:
        if not replies or replies[0][0] < 400:
            raise
    for code, text in replies:
        transcript.server(code, text)
    return replies


def _one_by_one(connection: smtplib.SMTP, commands: list[tuple[str, str]], transcript) -> list:
    """The same, a command at a time; none after a refused MAIL (whose reply is all there is)."""
    replies = []
    for verb, argument in commands:
        transcript.client(f"{verb} {argument}")
        replies.append(connection.docmd(verb, argument))
        transcript.server(*replies[-1])
        if replies[0][0] >= 400:
            break
    return replies


def tracked(message: OutboundMessage) -> bool:
    """Tracked messages differ per recipient, so each recipient gets a transaction of its own."""
    return message.track_opens or message.track_links != "None"


_BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def crlf(content: bytes) -> bytes:
    """``content`` with every line ending CRLF, as SMTP requires (RFC 5321 §2.3.8): a bare LF
    or CR in the stored message would otherwise be relayed as it came (and a bare line end
    before a dot is how messages are smuggled past the next hop)."""
    return _BARE_LINE_END.sub(b"\r\n", content) if _BARE_LINE_END.search(content) else content


def sender_address(message: OutboundMessage) -> str:
    """The From address (addr-spec) whose domain signs the message and takes its bounces."""
    return _addr_spec(message.from_address)


@lru_cache(maxsize=1024)
def _addr_spec(from_header: str) -> str:
    # Parsing the header costs more than the cached key look-up; senders repeat themselves.
    return first_address(from_header) or from_header


def unsigned_bytes(message: OutboundMessage, recipient: str | None) -> bytes:
    """The message for ``recipient``: tracking applied, then line endings made CRLF."""
    return crlf(apply_tracking(message, recipient))


def message_bytes(message: OutboundMessage, recipient: str | None) -> bytes:
    """The bytes sent after DATA: ``unsigned_bytes`` with DKIM signatures in front, computed
    over exactly those bytes (``domains.signing``: the From domain's keys or the service's).
    A key that cannot sign is logged and the message goes unsigned rather than not at all."""
    content = unsigned_bytes(message, recipient)
    try:
        signature = signature_for(sender_address(message), content)
    except DATABASE_UNAVAILABLE:
        raise
    except Exception:
        log.exception("DKIM signature not added to message %s", message.message_id)
        signature = b""
    return signature + content


# --- results --------------------------------------------------------------------------------------


def _one_line(code: int, text: bytes | str) -> str:
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return storable(f"{code} {' '.join(reply.split())}")


def apply_reply(claim, recipient: Recipient, stage: str, code: int, text, transcript) -> None:
    reply = _one_line(code, text)
    if 200 <= code < 300:
        delivered(claim, recipient, reply)
        return
    enhanced = reply.split(" ", 2)[1] if reply.count(" ") >= 1 else ""
    failure = classify_smtp_failure(stage, code, enhanced if enhanced[:1].isdigit() else "", reply)
    if failure.permanent:
        bounced(claim, recipient, failure, reply, transcript)
    else:
        defer(claim, recipient, reply, transcript)


def delivered(claim: Claim, recipient: Recipient, reply: str) -> None:
    delivery = MessageEvent.Type.DELIVERY
    if claim.finish(recipient, delivery, status=Recipient.Status.DELIVERED, last_reply=reply):
        metrics.recipient_delivered(claim.message.received_at)
        log.info("delivered to %s: %s", recipient.email, reply)


def _bounce(message, recipient, bounce_type: str, details: str, transcript, **extra):
    dump = transcript.text() + "\r\n\r\n" + bytes(message.content).decode("utf-8", "replace")
    bounce = record_bounce(
        server=message.server,
        stream=message.stream,
        message_stream=message.stream.stream_id,
        type=bounce_type,
        email=recipient.email,
        message_id=message.message_id,
        from_address=first_address(message.from_address) or message.from_address,
        subject=message.subject,
        tag=message.tag,
        metadata=message.metadata,
        details=storable(details),
        content=storable(dump),
        **extra,
    )
    record_bounce_event(bounce, outbound=message)
    metrics.bounce_recorded(bounce_type)
    log.info("%s for %s: %s", bounce_type, recipient.email, " ".join(details.split())[:300])
    return bounce


def bounced(claim: Claim, recipient: Recipient, failure: SmtpFailure, reply: str, transcript):
    """A permanent failure: a bounce of the failure's type, never retried; the address is
    deactivated (HardBounce suppression, can be reactivated) only when the failure says so."""
    with transaction.atomic():
        if not claim.finish(recipient, status=Recipient.Status.BOUNCED, last_reply=reply):
            return
        bounce = _bounce(
            claim.message, recipient, failure.type, reply, transcript,
            inactive=failure.deactivates, can_activate=failure.deactivates,
        )  # fmt: skip
        if failure.deactivates:
            suppress(claim.message.stream, recipient.email, Suppression.Reason.HARD_BOUNCE,
                     Suppression.Origin.RECIPIENT, bounce=bounce)  # fmt: skip


def no_smtputf8(claim: Claim, recipient: Recipient, host: Host, transcript) -> None:
    """A non-ASCII local part needs SMTPUTF8 (RFC 6531), which the next hop does not offer."""
    reason = (
        f"Not sent: the address {recipient.email} needs SMTPUTF8 (RFC 6531), which the mail "
        f"server {host.host} does not offer"
    )
    transcript.append(f"-- {reason}")
    bounced(claim, recipient, SmtpFailure("HardBounce", True, False), reason, transcript)


def retry_delay(attempts: int) -> float:
    """Seconds before attempt number ``attempts + 1``: RETRY_BASE doubling up to RETRY_MAX."""
    return min(
        settings.DELIVERY_RETRY_BASE * (2 ** max(attempts - 1, 0)), settings.DELIVERY_RETRY_MAX
    )


def defer(claim: Claim, recipient: Recipient, reason: str, transcript, dns: bool = False) -> None:
    message = claim.message
    now = timezone.now()
    reason = storable(reason)
    with transaction.atomic():
        if (now - message.received_at).total_seconds() >= settings.DELIVERY_GIVE_UP_AFTER:
            if claim.finish(recipient, status=Recipient.Status.FAILED, last_reply=reason):
                details = f"Gave up after {recipient.attempts} attempts: {reason}"
                _bounce(message, recipient, "SoftBounce", details, transcript)
            return
        first = not recipient.delayed_reported
        recorded = claim.finish(
            recipient,
            status=Recipient.Status.DEFERRED,
            last_reply=reason,
            delayed_reported=True,
            next_attempt_at=now + timedelta(seconds=retry_delay(recipient.attempts)),
        )
        if recorded and first:
            _bounce(message, recipient, "DnsError" if dns else "Transient", reason, transcript)


# --- unexpected errors ----------------------------------------------------------------------------


def _failed_by_errors(claim: Claim, recipient: Recipient, **fields) -> None:
    details = (
        f"The message could not be delivered: {recipient.errors} tries failed with an unexpected "
        f"error or were cut short, so delivery to this recipient stopped. Last: "
        f"{fields.get('last_reply') or recipient.last_reply or 'nothing recorded'}"
    )
    with transaction.atomic():
        if claim.finish(recipient, status=Recipient.Status.FAILED, **fields):
            _bounce(claim.message, recipient, "SoftBounce", details, Transcript())


def _give_up_on_repeated_errors(claim: Claim) -> None:
    """Recipients whose earlier tries kept failing unexpectedly (or whose workers kept dying)
    are not tried again: they end ``failed``, with a bounce that says why."""
    for recipient in claim.recipients():
        if recipient.errors >= settings.DELIVERY_ERROR_LIMIT:
            _failed_by_errors(claim, recipient)


def unexpected_error(claim: Claim, exc: Exception) -> None:
    """Count an unexpected error on the recipients still held: retried on the backoff schedule,
    or ``failed`` once they reached DELIVERY_ERROR_LIMIT errors."""
    error = storable(f"{exc.__class__.__name__}: {exc}"[:1000])
    now = timezone.now()
    claim.reload()
    for recipient in claim.recipients():
        recipient.errors += 1
        fields = {
            "errors": recipient.errors,
            "last_reply": f"Unexpected error while delivering: {error}",
        }
        if recipient.errors >= settings.DELIVERY_ERROR_LIMIT:
            _failed_by_errors(claim, recipient, **fields)
        else:
            claim.finish(
                recipient,
                status=Recipient.Status.DEFERRED,
                next_attempt_at=now + timedelta(seconds=retry_delay(recipient.attempts)),
                **fields,
            )


# --- what comes next ------------------------------------------------------------------------------


def next_retry_in(message: OutboundMessage | int, now=None) -> float | None:
    """Seconds until the message's next waiting recipient is due (its next attempt, or the end
    of the lease of the worker holding it), if any waits."""
    now = now or timezone.now()
    message_id = message if isinstance(message, int) else message.pk
    waiting = Recipient.objects.filter(message_id=message_id, status__in=WAITING)
    due = [
        max([t for t in times if t is not None], default=now)
        for times in waiting.values_list("next_attempt_at", "leased_until")
    ]
    if not due:
        return None
    return max((min(due) - now).total_seconds(), 0.0)
