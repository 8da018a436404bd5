"""Webhooks: Postmark-format event payloads posted to each stream's webhook URLs (compat §4).

The tasks live here, beside the code that queues them (``publish``), so that queueing a try and
running it need no import in a circle. The database is the source of truth. ``enqueue_event``
(called through ``messages.events.event_committed`` once the event's transaction commits) creates
one ``WebhookDelivery`` row per webhook that wants the event and queues a task carrying only that
row's id. ``deliver`` claims the row with a short lease, POSTs outside any transaction, then
records a ``WebhookAttempt`` and the outcome:

- 2xx: delivered;
- 403: stopped at once (Postmark's rule);
- anything else, or no answer: retried after 1, 5, 10, 10, 10, 15, 30, 60, 120 and 360 minutes
  (``WEBHOOK_RETRY_DELAYS``), then failed.

Retries are queued with a ``countdown`` capped at ``WEBHOOK_MAX_COUNTDOWN`` (a task that wakes up
early queues itself again for the rest); the periodic ``sweep`` queues again every due delivery
whose task was lost and dispatches events whose ``enqueue_event`` never ran (the event table is the
outbox). Every task is idempotent: a try happens only if the row is still pending, due, unleased
and at the attempt count the task was queued for.

Beyond Postmark, every POST is signed: ``X-Webhook-Signature: sha256=<hex>`` is the HMAC-SHA256,
under the webhook's signing secret, of ``<X-Webhook-Timestamp>.`` followed by the exact body bytes.

SSRF guard: URLs whose host resolves to a private, loopback, link-local, multicast, reserved or
unspecified address are refused when configured and again when sent (the connection goes to the
address that was checked, with the original Host header and TLS server name), unless
``WEBHOOK_ALLOW_PRIVATE_URLS`` is on.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from celery import current_app, shared_task
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from core import leases
from core.logcontext import about_message
from messages.models import MessageEvent
from webhooks import metrics
from webhooks.models import Webhook, WebhookAttempt, WebhookDelivery, WebhookSweepCursor
from webhooks.serializers import webhook_payload

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
DELIVERY_HEADER = "X-Webhook-Delivery"
DEFAULT_RETRY_DELAYS = (60, 300, 600, 600, 600, 900, 1800, 3600, 7200, 21600)
RESPONSE_EXCERPT_BYTES = 1024
# Answers longer than this are not read to the end; the connection is closed instead.
MAX_RESPONSE_READ = 64 * 1024
# Header names a webhook's custom headers may not set (the request's framing is ours).
FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "expect"}
)
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")


def retry_delays() -> tuple[int, ...]:
    return tuple(getattr(settings, "WEBHOOK_RETRY_DELAYS", DEFAULT_RETRY_DELAYS))


def allow_private() -> bool:
    return bool(getattr(settings, "WEBHOOK_ALLOW_PRIVATE_URLS", False))


# --- URLs and the SSRF guard ----------------------------------------------------------------------


# A webhook URL is stored in a column of this size; a host name has at most 253 characters.
MAX_URL_LENGTH = Webhook._meta.get_field("url").max_length
MAX_HOST_LENGTH = 253
# Control characters (NUL included) and lone surrogates: never part of a URL that can be sent.
_UNSENDABLE_RE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# What a header value may hold: tab, visible ASCII, space and obs-text (RFC 9110 §5.5), i.e. what
# http.client can send (Latin-1) without control characters.
_HEADER_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
MAX_CUSTOM_HEADERS = 50


class UnsafeUrl(ValueError):
    """A webhook URL that is refused; ``message`` says why, for the API and the admin."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def split_credentials(url: str) -> tuple[str, str, str]:
    """``https://user:pass@host/x`` → (``https://host/x``, ``user``, ``pass``). A URL that cannot
    even be split comes back as given, for ``check_url`` to refuse with its reason."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip(), "", ""
    if "@" not in parts.netloc:
        return url.strip(), "", ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, unquote(user), unquote(password)


def address_refused(address: str) -> str | None:
    """Why an IP address may not be a webhook destination, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            why = address_refused(str(embedded))
            if why:
                return why
    for flag in (
        "is_loopback",
        "is_private",
        "is_link_local",
        "is_multicast",
        "is_reserved",
        "is_unspecified",
        "is_site_local",
    ):
        if getattr(ip, flag, False):
            return flag[3:].replace("_", "-")
    if not ip.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line


def _shown(url: str) -> str:
    return url if len(url) <= 200 else url[:200] + "…"


def parse_url(url: str) -> Target:
    """The target of an http(s) URL with a valid host name; raises ``UnsafeUrl`` otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"The webhook URL must not be longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"The webhook URL '{_shown(url)}' is not a valid URL ({exc}).") from None
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise UnsafeUrl(f"The webhook URL '{_shown(url)}' must start with http:// or https://.")
    host = parts.hostname or ""
    if not host:
        raise UnsafeUrl(f"The webhook URL '{_shown(url)}' has no host name.")
    if any(c.isspace() for c in url):
        raise UnsafeUrl(f"The webhook URL '{_shown(url)}' contains white space.")
    if _UNSENDABLE_RE.search(url):
        raise UnsafeUrl(
            f"The webhook URL '{_shown(url)}' contains a control character (e.g. NUL) or a lone "
            "surrogate."
        )
    _check_host(host)
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def _check_host(host: str) -> None:
    """Refuse a host name that cannot be looked up at all: the resolver encodes it with IDNA,
    which fails (``UnicodeError``) on an empty label, a label over 63 characters or a character
    IDNA forbids."""
    try:
        encoded = host.encode("idna")
    except UnicodeError:
        encoded = b""
    if not encoded or len(encoded) > MAX_HOST_LENGTH:
        raise UnsafeUrl(
            f"The webhook URL's host name '{_shown(host)}' is not a valid host name: each part "
            f"between dots must be 1 to 63 characters (international names valid IDNA), and "
            f"the whole name at most {MAX_HOST_LENGTH}."
        )


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


def checked_addresses(target: Target, private_ok: bool | None = None) -> list[str]:
    """Resolve the target's host and check every address; raises ``UnsafeUrl`` (refused) or
    ``OSError`` (does not resolve)."""
    private_ok = allow_private() if private_ok is None else private_ok
    addresses = resolve(target.host, target.port)
    if not private_ok:
        for address in addresses:
            why = address_refused(address)
            if why:
                # The address itself is never told: it would map the service's network.
                raise UnsafeUrl(
                    f"The webhook URL's host '{target.host}' resolves to a {why} address; "
                    "webhooks can only be posted to public addresses."
                )
    return addresses


def check_url(url: str, private_ok: bool | None = None) -> Target:
    """The configuration-time check: http(s), a host, and (when it resolves) only public
    addresses. A host that does not resolve yet is accepted; the send-time check still applies."""
    target = parse_url(url)
    if "@" in (urlsplit(url).netloc or ""):
        raise UnsafeUrl("Give basic-auth credentials in HttpAuth, not in the stored URL.")
    with contextlib.suppress(OSError):
        checked_addresses(target, private_ok)
    return target


def validate_headers(headers) -> list[dict]:
    """Postmark's ``HttpHeaders`` ([{Name, Value}]), checked; raises ``ValueError``."""
    if headers in (None, ""):
        return []
    if not isinstance(headers, list):
        raise ValueError('HttpHeaders must be a list of {"Name": ..., "Value": ...} objects.')
    if len(headers) > MAX_CUSTOM_HEADERS:
        raise ValueError(f"HttpHeaders: at most {MAX_CUSTOM_HEADERS} headers can be set.")
    clean = []
    for entry in headers:
        if not isinstance(entry, dict):
            raise ValueError('HttpHeaders must be a list of {"Name": ..., "Value": ...} objects.')
        lowered = {str(k).lower(): v for k, v in entry.items()}
        name = lowered.get("name")
        value = lowered.get("value")
        value = "" if value is None else value
        if not isinstance(name, str) or not _HEADER_NAME_RE.fullmatch(name):
            raise ValueError(f"HttpHeaders: '{name}' is not a valid header name.")
        if name.lower() in FORBIDDEN_HEADERS:
            raise ValueError(f"HttpHeaders: the header '{name}' cannot be set.")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"HttpHeaders: the value of '{name}' must be a string.")
        value = str(value)
        if not _HEADER_VALUE_RE.fullmatch(value) or len(value) > 4000:
            raise ValueError(f"HttpHeaders: the value of '{name}' is not a valid header value.")
        clean.append({"Name": name, "Value": value})
    return clean


# --- Which webhooks want an event ----------------------------------------------------------------


def wants(webhook, event) -> bool:
    kind = event.type
    if kind in ("Bounce", "SpamComplaint"):
        bounce = event.bounce
        if bounce is None:
            return False
        if bounce.type == "SpamComplaint" or kind == "SpamComplaint":
            return webhook.spam_complaint_enabled
        if bounce.type == "SMTPApiError" and not event.server.enable_smtp_api_error_hooks:
            return False
        return webhook.bounce_enabled
    if kind == "Delivery":
        return webhook.delivery_enabled
    if kind == "Open":
        if not webhook.open_enabled:
            return False
        data = event.data if isinstance(event.data, dict) else {}
        return bool(data.get("FirstOpen")) or not webhook.open_post_first_open_only
    if kind == "Click":
        return webhook.click_enabled
    if kind == "SubscriptionChange":
        return webhook.subscription_change_enabled
    return False


def include_content(webhook, event) -> bool:
    if event.type == "SpamComplaint" or (event.bounce and event.bounce.type == "SpamComplaint"):
        return webhook.spam_complaint_include_content
    return webhook.bounce_include_content


def _create_deliveries(event, webhooks, now) -> list[int]:
    """Create the missing delivery rows of ``event`` for ``webhooks``; the ids of new ones."""
    hooks = [w for w in webhooks if wants(w, event)]
    if not hooks:
        return []
    existing = set(
        WebhookDelivery.objects.filter(event=event, webhook__in=hooks).values_list(
            "webhook_id", flat=True
        )
    )
    missing = [w for w in hooks if w.pk not in existing]
    if not missing:
        return []
    WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(webhook=w, event=event, next_attempt_at=now) for w in missing],
        ignore_conflicts=True,
    )
    return list(
        WebhookDelivery.objects.filter(
            event=event, webhook__in=missing, attempts=0, status=WebhookDelivery.Status.PENDING
        ).values_list("pk", flat=True)
    )


def on_event_committed(sender, *, event_id: int, stream_id: int | None = None, **kwargs) -> None:
    """Receiver of ``messages.events.event_committed`` (connected in ``WebhooksConfig``). An
    event of a stream that has no webhook costs no query (``streams_with_webhooks``)."""
    if stream_id is not None and stream_id not in streams_with_webhooks():
        return
    enqueue_event(event_id)


_hooked_streams: tuple[float, frozenset[int]] = (0.0, frozenset())
_hooked_lock = threading.Lock()


def streams_with_webhooks() -> frozenset[int]:
    """The streams that have at least one webhook, read at most once per
    ``WEBHOOK_STREAMS_CACHE_SECONDS`` per process (at once after a change in this process).
    A webhook added in another process is seen within that time; an event it misses meanwhile
    is posted by the sweep (``dispatch_missed_events``), which checks every event against
    every webhook."""
    global _hooked_streams
    expires, streams = _hooked_streams
    now = time.monotonic()
    if now < expires:
        return streams
    streams = frozenset(Webhook.objects.values_list("stream_id", flat=True).distinct())
    with _hooked_lock:
        _hooked_streams = (now + settings.WEBHOOK_STREAMS_CACHE_SECONDS, streams)
    return streams


def forget_webhook_streams(*args, **kwargs) -> None:
    """Receiver of Webhook saves and deletes (connected in ``WebhooksConfig``)."""
    global _hooked_streams
    with _hooked_lock:
        _hooked_streams = (0.0, frozenset())


def enqueue_event(event_id: int) -> None:
    """Queue the webhook posts for an event (see ``messages.events``). Never raises: the sweep
    finds an event whose dispatch failed."""
    try:
        ids = dispatch_event(event_id)
    except Exception:
        log.exception("could not dispatch webhooks for event %s (the sweep will)", event_id)
        return
    for delivery_id in ids:
        publish(delivery_id, 0)


def dispatch_event(event_id: int, now=None) -> list[int]:
    """Create the event's delivery rows; returns the ids of the new ones (not yet queued)."""
    event = MessageEvent.objects.select_related("server", "bounce").filter(pk=event_id).first()
    if event is None or event.stream_id is None:
        return []
    webhooks = list(Webhook.objects.filter(stream_id=event.stream_id))
    if not webhooks:
        return []
    return _create_deliveries(event, webhooks, now or timezone.now())


# --- Queueing -------------------------------------------------------------------------------------


def publish(delivery_id: int, attempts: int | None, countdown: float = 0) -> None:
    """Queue a try of a delivery. A broker failure loses nothing: the sweep finds the row."""
    try:
        post.apply_async((delivery_id, attempts), countdown=countdown or None, retry=False)
    except Exception as exc:
        log.warning("could not queue webhook delivery %s: %s", delivery_id, exc)


def _eager() -> bool:
    return bool(current_app.conf.task_always_eager)


# --- Signing --------------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str, body: bytes, signature_header: str, timestamp_header: str, tolerance: int = 300
) -> bool:
    """The receiver's check (the README snippet does the same)."""
    try:
        sent_at = int(timestamp_header)
    except (TypeError, ValueError):
        return False
    if abs(time.time() - sent_at) > tolerance:
        return False
    expected = signature(secret, timestamp_header, body)
    return hmac.compare_digest(expected, signature_header or "")


# --- HTTP -----------------------------------------------------------------------------------------


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a checked address; the Host header still names the URL's host."""

    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a checked address, with the URL's host as SNI and for certificate checks."""

    def __init__(self, host, port, address, timeout, context):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


_local = threading.local()
_tls_context: ssl.SSLContext | None = None


def _context() -> ssl.SSLContext:
    global _tls_context
    if _tls_context is None:
        _tls_context = ssl.create_default_context()
    return _tls_context


def _connections() -> dict:
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    return pool


def close_connections() -> None:
    for conn in _connections().values():
        conn.close()
    _connections().clear()


def _connect(target: Target, timeout: float):
    addresses = checked_addresses(target)
    last_error: Exception | None = None
    for address in addresses:
        if target.scheme == "https":
            conn = _PinnedHTTPSConnection(target.host, target.port, address, timeout, _context())
        else:
            conn = _PinnedHTTPConnection(target.host, target.port, address, timeout)
        try:
            conn.connect()
            return conn
        except OSError as exc:
            conn.close()
            last_error = exc
    raise last_error or OSError(f"{target.host} has no address")


@dataclass
class Result:
    status_code: int | None = None
    excerpt: str = ""
    error: str = ""
    latency_ms: int = 0
    refused: bool = False  # the SSRF guard refused the destination: retrying cannot help

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def http_post(url: str, body: bytes, headers: dict, timeout: float | None = None) -> Result:
    """POST ``body`` to ``url`` on a kept-alive connection of this thread (one per host and port),
    after the SSRF check. Never raises for network trouble: the ``Result`` says what happened."""
    timeout = float(settings.WEBHOOK_TIMEOUT if timeout is None else timeout)
    started = time.monotonic()
    result = Result()
    try:
        target = parse_url(url)
    except UnsafeUrl as exc:
        result.error, result.refused = exc.message, True
        return result
    key = (target.scheme, target.host, target.port)
    pool = _connections()
    for fresh in (False, True):
        conn = None if fresh else pool.pop(key, None)
        reused = conn is not None
        try:
            if conn is None:
                conn = _connect(target, timeout)
            else:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            with _deadline(conn, started + timeout):
                conn.request("POST", target.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read(MAX_RESPONSE_READ + 1)
            result.status_code = response.status
            result.excerpt = data[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace")
            if len(data) > MAX_RESPONSE_READ or response.will_close:
                conn.close()
            else:
                pool[key] = conn
            break
        except UnsafeUrl as exc:
            result.error, result.refused = exc.message, True
            break
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            if conn is not None:
                conn.close()
            if reused:  # a kept-alive connection the receiver had closed: once more, fresh
                continue
            result.error = _describe(exc)
            break
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if conn is not None:
                conn.close()
            result.error = _describe(exc)
            break
    result.latency_ms = int((time.monotonic() - started) * 1000)
    return result


@contextlib.contextmanager
def _deadline(conn, deadline: float):
    """One overall deadline for a POST: a receiver that dribbles its answer a byte at a time
    cannot hold the worker's thread past it (a socket timeout alone restarts with every byte)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the webhook's deadline passed")
    if conn.sock is not None:
        conn.sock.settimeout(remaining)
    expired = threading.Event()

    def cut():
        expired.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(remaining, cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if expired.is_set():
            raise TimeoutError("the webhook's deadline passed") from exc
        raise
    finally:
        timer.cancel()
    if expired.is_set():
        raise TimeoutError("the webhook's deadline passed")


def _describe(exc: Exception) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "Timed out waiting for the receiver."
    if isinstance(exc, socket.gaierror):
        return f"The host name could not be resolved ({exc})."
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:1000]


def request_headers(webhook, body: bytes, delivery_id: int) -> dict:
    import base64

    headers = {h["Name"]: h["Value"] for h in (webhook.http_headers or []) if isinstance(h, dict)}
    for name in list(headers):
        if name.lower() in FORBIDDEN_HEADERS or name.lower() in (
            "content-type",
            "user-agent",
            SIGNATURE_HEADER.lower(),
            TIMESTAMP_HEADER.lower(),
            DELIVERY_HEADER.lower(),
        ):
            headers.pop(name)
    headers["Content-Type"] = "application/json"
    headers["User-Agent"] = settings.WEBHOOK_USER_AGENT
    if webhook.http_auth_username or webhook.http_auth_password_encrypted:
        for name in [n for n in headers if n.lower() == "authorization"]:
            headers.pop(name)
        pair = f"{webhook.http_auth_username}:{webhook.http_auth_password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    stamp = str(int(time.time()))
    headers[TIMESTAMP_HEADER] = stamp
    headers[SIGNATURE_HEADER] = signature(webhook.signing_secret, stamp, body)
    headers[DELIVERY_HEADER] = str(delivery_id)
    return headers


def encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- One try --------------------------------------------------------------------------------------


def _lease_seconds() -> float:
    return float(settings.WEBHOOK_TIMEOUT) * 2 + 30


def deliver(delivery_id: int, attempts: int | None = None) -> str:
    """Try a delivery once if it is due; returns its status afterwards, or "skipped".

    ``attempts`` is the attempt count the task was queued for: a stale task (the row moved on)
    does nothing; one that woke up before ``next_attempt_at`` queues itself again."""
    now = timezone.now()
    claim = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    )
    if attempts is not None:
        claim = claim.filter(attempts=attempts)
    if not leases.take(claim, _lease_seconds(), now):
        _requeue_early_task(delivery_id, attempts, now)
        return "skipped"
    delivery = (
        WebhookDelivery.objects.select_related(
            "webhook", "event__stream", "event__outbound", "event__bounce"
        )
        .defer("event__outbound__content", "event__outbound__submission_id")
        .get(pk=delivery_id)
    )
    webhook, event = delivery.webhook, delivery.event
    stream_id = event.stream.stream_id if event.stream else None
    with about_message(event.message_id, event.server_id, stream_id):
        if delivery.payload:
            body = delivery.payload.encode("utf-8")
        else:
            body = encode(webhook_payload(event, include_content(webhook, event)))
        started_at = timezone.now()
        result = http_post(webhook.url, body, request_headers(webhook, body, delivery.pk))
        return _record(delivery, body, result, started_at)


def _record(delivery, body, result: Result, started_at) -> str:
    metrics.post_made(result.status_code)
    number = delivery.attempts + 1
    now = timezone.now()
    fields = {
        "attempts": number,
        "leased_until": None,
        "last_status_code": result.status_code,
        "last_error": result.error,
        "updated_at": now,
    }
    delay = None
    if result.ok:
        fields.update(status=WebhookDelivery.Status.DELIVERED, next_attempt_at=None, payload="")
    elif result.status_code == 403:
        fields.update(status=WebhookDelivery.Status.STOPPED, next_attempt_at=None)
    elif result.refused:  # the destination is not allowed: retrying cannot change that
        fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    else:
        delays = retry_delays()
        if number <= len(delays):
            delay = delays[number - 1]
            fields["next_attempt_at"] = now + timedelta(seconds=delay)
        else:
            fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    if not result.ok and not delivery.payload:
        fields["payload"] = body.decode("utf-8")
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery_id=delivery.pk,
            number=number,
            started_at=started_at,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            response_excerpt=result.excerpt[:RESPONSE_EXCERPT_BYTES],
            error=result.error,
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    status = fields.get("status", WebhookDelivery.Status.PENDING)
    if delay is not None:
        log.info(
            "webhook delivery %s failed (%s), retry %d in %ss",
            delivery.pk,
            result.status_code or result.error,
            number,
            delay,
        )
        publish(delivery.pk, number, countdown=min(delay, settings.WEBHOOK_MAX_COUNTDOWN))
    return str(status)


def _requeue_early_task(delivery_id: int, attempts: int | None, now) -> None:
    """A countdown task capped below its retry delay wakes up early: queue it for the rest."""
    if attempts is None or _eager():
        return
    row = (
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=WebhookDelivery.Status.PENDING, attempts=attempts
        )
        .values("next_attempt_at")
        .first()
    )
    if row and row["next_attempt_at"] and row["next_attempt_at"] > now:
        remaining = (row["next_attempt_at"] - now).total_seconds()
        publish(delivery_id, attempts, countdown=min(remaining, settings.WEBHOOK_MAX_COUNTDOWN))


def retry_now(deliveries) -> int:
    """The admin's "retry now": make the deliveries pending and due now, and queue them."""
    ids = list(deliveries.values_list("pk", flat=True))
    WebhookDelivery.objects.filter(pk__in=ids).update(
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at=timezone.now(),
        leased_until=None,
        updated_at=timezone.now(),
    )
    for delivery_id in ids:
        publish(delivery_id, None)
    return len(ids)


# --- The sweep ------------------------------------------------------------------------------------


def requeue_due(grace_seconds: float | None = None, now=None) -> int:
    """Queue again the pending deliveries that should have been tried ``grace_seconds`` ago and
    are not being tried (a lost task, a crashed worker, a broker restart)."""
    now = now or timezone.now()
    grace = settings.SWEEP_AFTER_SECONDS if grace_seconds is None else grace_seconds
    due = leases.free(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now - timedelta(seconds=grace),
        ),
        now,
    )
    rows = list(due.order_by("next_attempt_at").values_list("pk", "attempts")[:10_000])
    for delivery_id, attempts in rows:
        # Due "now" again, so that the next sweep leaves it alone for another grace period.
        WebhookDelivery.objects.filter(pk=delivery_id, attempts=attempts).update(
            next_attempt_at=now
        )
        publish(delivery_id, attempts)
    return len(rows)


def dispatch_missed_events(grace_seconds: float | None = None, now=None, batch: int = 2000) -> int:
    """Create the deliveries of events whose ``enqueue_event`` never ran (the process died right
    after the commit). Walks the events after a cursor, leaving the youngest ``grace_seconds``
    for the normal path; returns how many deliveries it created."""
    now = now or timezone.now()
    grace = settings.SWEEP_AFTER_SECONDS if grace_seconds is None else grace_seconds
    cutoff = now - timedelta(seconds=grace)
    cursor = WebhookSweepCursor.objects.filter(pk=1).first()
    if cursor is None:
        # The first sweep starts from now: history is not posted to webhooks.
        last = MessageEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        WebhookSweepCursor.objects.get_or_create(pk=1, defaults={"last_event_id": last})
        return 0
    hooks_by_stream: dict[int, list] = {}
    for webhook in Webhook.objects.all():
        hooks_by_stream.setdefault(webhook.stream_id, []).append(webhook)
    position, created = cursor.last_event_id, 0
    for _ in range(50):
        rows = list(
            MessageEvent.objects.filter(id__gt=position)
            .order_by("id")
            .values_list("id", "stream_id", "occurred_at")[:batch]
        )
        young = False
        for event_id, stream_id, occurred_at in rows:
            if occurred_at > cutoff:
                young = True
                break
            position = event_id
            hooks = [w for w in hooks_by_stream.get(stream_id, []) if w.created_at <= now]
            hooks = [w for w in hooks if occurred_at >= w.created_at - timedelta(seconds=grace)]
            if not hooks:
                continue
            event = MessageEvent.objects.select_related("server", "bounce").get(pk=event_id)
            for delivery_id in _create_deliveries(event, hooks, timezone.now()):
                created += 1
                publish(delivery_id, 0)
        if young or len(rows) < batch:
            break
    WebhookSweepCursor.objects.filter(pk=1).update(last_event_id=position, updated_at=now)
    return created


def sweep(now=None) -> dict[str, int]:
    return {
        "requeued": requeue_due(now=now),
        "dispatched": dispatch_missed_events(now=now),
    }


# --- Tasks (routed to the "webhooks" queue by CELERY_TASK_ROUTES) --------------------------------


@shared_task(
    name="webhooks.post",
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=None,
)
def post(delivery_id: int, attempts: int | None = None) -> str:
    """One try of a webhook delivery (idempotent: see ``deliver``)."""
    return deliver(delivery_id, attempts)


@shared_task(name="webhooks.sweep")
def webhook_sweep() -> dict[str, int]:
    """Queue due retries whose task was lost and dispatch events whose dispatch was lost."""
    return sweep()
