"""Delivery: relay each outbound message and record what happened to every recipient.

Per recipient: 2xx → Delivery event; 5xx → a bounce of the refined type (HardBounce deactivates the
address); 4xx or no connection → retried on a backoff schedule, with a Transient (or DnsError)
bounce at the first deferral and a SoftBounce when giving up. Recipient state is committed before
DATA and right after each reply, so a task that runs again never sends to a recipient already
delivered; only a worker that dies between the remote server's 250 and the next commit (a few
milliseconds) leaves a recipient to be sent again.
"""

import logging
import smtplib
import socket
import ssl
import threading
import time
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bounces.reports import classify_smtp_reply, verp_address
from bounces.services import record_bounce
from outbound.events import record_bounce_event, record_message_event
from outbound.mime import first_address
from outbound.models import MessageEvent, OutboundMessage, Recipient
from outbound.tracking import apply_tracking
from outbound.transport import DnsFailure, Host, address_of, destination_of, hosts_for
from servers.models import DeliveryType
from streams.models import Suppression
from streams.suppressions import suppress

log = logging.getLogger(__name__)

DEACTIVATING_TYPES = {"HardBounce"}
TERMINAL = {Recipient.Status.DELIVERED, Recipient.Status.BOUNCED, Recipient.Status.FAILED,
            Recipient.Status.SANDBOXED}  # fmt: skip


class Transcript(list):
    """The SMTP conversation, for bounce dumps."""

    def client(self, line: str) -> None:
        self.append(f"C: {line}")

    def server(self, code: int, text: bytes | str) -> None:
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for line in text.splitlines() or [""]:
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


# --- the task's work ------------------------------------------------------------------------------


def in_doubt_after() -> timezone.timedelta:
    """A recipient still 'sending' this long after its DATA began belongs to a worker that died
    mid-transaction: whether the remote server got the message is unknown, so it is sent again
    (at least once, as MTAs do; the window is the few milliseconds between the remote server's
    reply and the commit that records it)."""
    return timezone.timedelta(seconds=settings.OUTBOUND_TIMEOUT * 3)


def due_recipients(message: OutboundMessage, now) -> list[Recipient]:
    stale_sending = now - in_doubt_after()
    return [
        r
        for r in message.deliveries.all()
        if r.status == Recipient.Status.PENDING
        or (r.status == Recipient.Status.DEFERRED and (r.next_attempt_at or now) <= now)
        or (r.status == Recipient.Status.SENDING and r.updated_at < stale_sending)
    ]


def deliver_message(outbound_id: int) -> str:
    """Deliver the due recipients of one message; returns the message's status."""
    message = (
        OutboundMessage.objects.select_related("server", "stream").filter(pk=outbound_id).first()
    )
    if message is None:
        return "missing"
    if message.server.delivery_type == DeliveryType.SANDBOX:
        return _sandbox(message)
    now = timezone.now()
    by_destination: dict[str, list[Recipient]] = defaultdict(list)
    for recipient in due_recipients(message, now):
        by_destination[destination_of(recipient.email)].append(recipient)
    for destination, recipients in by_destination.items():
        batches = [[r] for r in recipients] if tracked(message) else [recipients]
        for batch in batches:
            _deliver_to(message, destination, batch)
    return refresh_status(message)


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
    statuses = set(message.deliveries.values_list("status", flat=True))
    if statuses - TERMINAL:
        status = OutboundMessage.Status.QUEUED
    elif Recipient.Status.DELIVERED in statuses:
        status = OutboundMessage.Status.SENT
    elif statuses == {Recipient.Status.SANDBOXED}:
        status = OutboundMessage.Status.SANDBOXED
    elif Recipient.Status.BOUNCED in statuses:
        status = OutboundMessage.Status.BOUNCED
    else:
        status = OutboundMessage.Status.FAILED
    if status != message.status:
        message.status = status
        message.save(update_fields=["status"])
    return status


def _deliver_to(message: OutboundMessage, destination: str, recipients: list[Recipient]) -> None:
    transcript = Transcript()
    try:
        hosts = hosts_for(destination)
    except DnsFailure as exc:
        for recipient in recipients:
            defer(message, recipient, str(exc), transcript, dns=True)
        return
    last_error = "no mail host could be reached"
    for host in hosts:
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
            reusable = _transaction(connection, message, recipients, transcript)
            return
        except (OSError, smtplib.SMTPException) as exc:
            last_error = f"{host.host}:{host.port}: {_describe(exc)}"
            transcript.append(f"-- {last_error}")
            recipients = [r for r in recipients if r.status not in TERMINAL]
        finally:
            pool().release(host, connection, reusable)
    for recipient in recipients:
        defer(message, recipient, last_error, transcript)


def _describe(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace')}"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or exc.__class__.__name__


def _transaction(connection, message, recipients, transcript) -> bool:
    """One SMTP transaction for the recipients; returns whether the connection can be reused."""
    sender = verp_address(str(message.message_id), settings.BOUNCE_DOMAIN)
    transcript.client(f"MAIL FROM:<{sender}>")
    code, text = connection.mail(
        sender, ["BODY=8BITMIME"] if connection.has_extn("8bitmime") else []
    )
    transcript.server(code, text)
    if code >= 400:
        for recipient in recipients:
            apply_reply(message, recipient, code, text, transcript)
        return code < 500 and code != 421
    accepted = []
    for recipient in recipients:
        transcript.client(f"RCPT TO:<{recipient.email}>")
        code, text = connection.rcpt(recipient.email)
        transcript.server(code, text)
        if code in (250, 251):
            accepted.append(recipient)
        else:
            apply_reply(message, recipient, code, text, transcript)
    if not accepted:
        connection.rset()
        return True
    Recipient.objects.filter(pk__in=[r.pk for r in accepted]).update(
        status=Recipient.Status.SENDING, updated_at=timezone.now()
    )
    transcript.client("DATA")
    code, text = connection.data(
        apply_tracking(message, accepted[0].email if tracked(message) else None)
    )
    transcript.server(code, text)
    for recipient in accepted:
        apply_reply(message, recipient, code, text, transcript)
    return True


def tracked(message: OutboundMessage) -> bool:
    """Tracked messages differ per recipient, so each recipient gets a transaction of its own."""
    return message.track_opens or message.track_links != "None"


# --- results --------------------------------------------------------------------------------------


def apply_reply(message, recipient: Recipient, code: int, text: bytes | str, transcript) -> None:
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    reply = f"{code} {' '.join(reply.split())}"
    if 200 <= code < 300:
        delivered(message, recipient, reply)
    elif 500 <= code < 600:
        bounced(message, recipient, code, reply, transcript)
    else:
        defer(message, recipient, reply, transcript)


@transaction.atomic
def delivered(message: OutboundMessage, recipient: Recipient, reply: str) -> None:
    now = timezone.now()
    recipient.status = Recipient.Status.DELIVERED
    recipient.last_reply = reply
    recipient.attempts += 1
    recipient.save(update_fields=["status", "last_reply", "attempts", "updated_at"])
    record_message_event(message, MessageEvent.Type.DELIVERY, recipient.email, details=reply,
                         occurred_at=now)  # fmt: skip


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
        details=details,
        content=dump,
        **extra,
    )
    record_bounce_event(bounce, outbound=message)
    return bounce


@transaction.atomic
def bounced(message, recipient: Recipient, code: int, reply: str, transcript) -> None:
    enhanced = reply.split(" ", 2)[1] if reply.count(" ") >= 1 else ""
    bounce_type = classify_smtp_reply(code, enhanced if enhanced[:1].isdigit() else "", reply)
    if bounce_type in ("Transient", "DnsError"):
        bounce_type = "HardBounce"  # a permanent reply is never "delayed"
    deactivate = bounce_type in DEACTIVATING_TYPES
    bounce = _bounce(
        message, recipient, bounce_type, reply, transcript,
        inactive=deactivate, can_activate=deactivate,
    )  # fmt: skip
    if deactivate:
        suppress(message.stream, recipient.email, Suppression.Reason.HARD_BOUNCE,
                 Suppression.Origin.RECIPIENT, bounce=bounce)  # fmt: skip
    recipient.status = Recipient.Status.BOUNCED
    recipient.last_reply = reply
    recipient.attempts += 1
    recipient.save(update_fields=["status", "last_reply", "attempts", "updated_at"])


def retry_delay(attempts: int) -> float:
    """Seconds before attempt number ``attempts + 1``: RETRY_BASE doubling up to RETRY_MAX."""
    return min(
        settings.DELIVERY_RETRY_BASE * (2 ** max(attempts - 1, 0)), settings.DELIVERY_RETRY_MAX
    )


@transaction.atomic
def defer(message, recipient: Recipient, reason: str, transcript, dns: bool = False) -> None:
    now = timezone.now()
    recipient.attempts += 1
    recipient.last_reply = reason
    age = (now - message.received_at).total_seconds()
    if age >= settings.DELIVERY_GIVE_UP_AFTER:
        _bounce(message, recipient, "SoftBounce",
                f"Gave up after {recipient.attempts} attempts: {reason}", transcript)  # fmt: skip
        recipient.status = Recipient.Status.FAILED
    else:
        if not recipient.delayed_reported:
            _bounce(message, recipient, "DnsError" if dns else "Transient", reason, transcript)
            recipient.delayed_reported = True
        recipient.status = Recipient.Status.DEFERRED
        recipient.next_attempt_at = now + timezone.timedelta(
            seconds=retry_delay(recipient.attempts)
        )
    recipient.save()


def next_retry_in(message: OutboundMessage) -> float | None:
    """Seconds until the message's earliest deferred (or in-doubt) recipient is due, if any."""
    due = [
        r.next_attempt_at
        if r.status == Recipient.Status.DEFERRED
        else r.updated_at + in_doubt_after()
        for r in message.deliveries.filter(
            status__in=[Recipient.Status.DEFERRED, Recipient.Status.SENDING]
        )
    ]
    due = [d for d in due if d is not None]
    if not due:
        return None
    return max((min(due) - timezone.now()).total_seconds(), 0.0)
