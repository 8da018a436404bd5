"""Webhooks: Postmark payloads for every trigger posted to a real HTTP receiver, the retry
schedule, the 403 stop, recovery after an outage, the signature and the SSRF guard."""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from bounces.services import record_bounce
from conftest import free_port
from messages.events import record_bounce_event, record_message_event
from messages.models import MessageEvent, OutboundMessage
from streams.services import get_stream
from streams.suppressions import reactivate, suppress
from tracking import events as tracking
from webhooks import client, deliveries, fanout, guard, signing
from webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


class Receiver:
    """A threaded HTTP/1.1 server on 127.0.0.1 that records every POST and answers with
    ``status`` (a number, or a list consumed one per request)."""

    def __init__(self, port: int | None = None, status=200):
        self.requests: list[dict] = []
        self.status = status
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    status = receiver.status
                    if isinstance(status, list):
                        status = status.pop(0) if len(status) > 1 else status[0]
                answer = b'{"ok":true}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.port = port or free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def payloads(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        client.close_connections()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def private_ok(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    return settings


@pytest.fixture
def queued(monkeypatch):
    """Tasks the code queues, as (delivery_id, attempts, countdown), instead of a broker."""
    calls: list[tuple] = []
    monkeypatch.setattr(
        fanout, "publish", lambda d, a, countdown=0: calls.append((d, a, countdown))
    )
    return calls


def drain(queued) -> list[str]:
    """Run the tasks queued so far synchronously, as a worker would; what they queue in turn
    (retries) stays in ``queued``."""
    batch = list(queued)
    queued.clear()
    return [deliveries.deliver(delivery_id, attempts) for delivery_id, attempts, _ in batch]


def all_triggers(stream, url, **fields) -> Webhook:
    values = dict(
        open_enabled=True,
        click_enabled=True,
        delivery_enabled=True,
        bounce_enabled=True,
        spam_complaint_enabled=True,
        subscription_change_enabled=True,
    )
    values.update(fields)
    webhook = Webhook(stream=stream, url=url, **values)
    webhook.save()
    return webhook


def outbound(server, stream, **fields) -> OutboundMessage:
    values = dict(
        message_id=uuid.uuid4(),
        server=server,
        stream=stream,
        from_address="app@example.com",
        to=["user@example.net"],
        recipients=["user@example.net"],
        subject="Hello",
        tag="welcome",
        metadata={"customer": "42", "plan": "pro"},
        content=b"Subject: Hello\r\n\r\nHi",
        received_at=timezone.now(),
    )
    values.update(fields)
    return OutboundMessage.objects.create(**values)


def bounce(server, stream, type="HardBounce", **fields):
    values = dict(
        server=server,
        stream=stream,
        message_stream=stream.stream_id,
        type=type,
        email="user@example.net",
        message_id=uuid.uuid4(),
        from_address="app@example.com",
        subject="Hello",
        tag="welcome",
        metadata={"customer": "42"},
        details="550 5.1.1 no such user",
        content="Full dump of the bounce",
        inactive=type in ("HardBounce", "SpamComplaint"),
        can_activate=type == "HardBounce",
    )
    values.update(fields)
    return record_bounce(**values)


def iso(value: str) -> bool:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


BOUNCE_KEYS = {
    "RecordType", "ID", "Type", "TypeCode", "Name", "Tag", "MessageID", "ServerID",
    "MessageStream", "Description", "Details", "Email", "From", "BouncedAt", "DumpAvailable",
    "Inactive", "CanActivate", "Subject", "Metadata",
}  # fmt: skip
DELIVERY_KEYS = {
    "RecordType", "ServerID", "MessageStream", "MessageID", "Recipient", "Tag", "DeliveredAt",
    "Details", "Metadata",
}  # fmt: skip
OPEN_KEYS = {
    "RecordType", "FirstOpen", "Recipient", "ReceivedAt", "UserAgent", "Platform", "Client",
    "OS", "Geo", "MessageID", "MessageStream", "Tag", "Metadata", "ReadSeconds",
}  # fmt: skip
CLICK_KEYS = (OPEN_KEYS - {"FirstOpen", "ReadSeconds"}) | {"ClickLocation", "OriginalLink"}
SUBSCRIPTION_KEYS = {
    "RecordType", "MessageID", "ServerID", "MessageStream", "ChangedAt", "Recipient", "Origin",
    "SuppressSending", "SuppressionReason", "Tag", "Metadata",
}  # fmt: skip


@pytest.mark.django_db
def test_every_trigger_posts_postmark_payloads(
    server, receiver, private_ok, queued, django_capture_on_commit_callbacks
):
    stream = get_stream(server, "outbound")
    all_triggers(stream, receiver.url)
    message = outbound(server, stream)
    with django_capture_on_commit_callbacks(execute=True):
        record_message_event(message, "Delivery", "user@example.net", details="250 2.0.0 OK")
        record_bounce_event(bounce(server, stream), outbound=message)
        record_bounce_event(bounce(server, stream, type="SpamComplaint"), outbound=message)
        tracking.record_open(message, "user@example.net", UA)
        tracking.record_click(message, "user@example.net", "https://example.com/a", "HTML", UA)
        suppress(stream, "gone@example.net", "ManualSuppression", "Customer")
        reactivate(stream, "gone@example.net")
    assert len(queued) == 7 and {q[1] for q in queued} == {0}
    assert drain(queued) == ["delivered"] * 7
    by_type = {}
    for request in receiver.requests:
        assert request["headers"]["Content-Type"] == "application/json"
        assert request["path"] == "/hook"
        payload = json.loads(request["body"])
        by_type.setdefault(payload["RecordType"], []).append(payload)
    assert sorted(by_type) == [
        "Bounce", "Click", "Delivery", "Open", "SpamComplaint", "SubscriptionChange",
    ]  # fmt: skip
    message_id = str(message.message_id)

    [delivery] = by_type["Delivery"]
    assert set(delivery) == DELIVERY_KEYS
    assert delivery["ServerID"] == server.id and delivery["MessageStream"] == "outbound"
    assert delivery["MessageID"] == message_id and delivery["Recipient"] == "user@example.net"
    assert delivery["Tag"] == "welcome" and delivery["Details"] == "250 2.0.0 OK"
    assert delivery["Metadata"] == {"customer": "42", "plan": "pro"}
    assert iso(delivery["DeliveredAt"]) and delivery["DeliveredAt"].endswith("Z")

    [hard] = by_type["Bounce"]
    assert set(hard) == BOUNCE_KEYS  # no Content without IncludeContent
    assert hard["Type"] == "HardBounce" and hard["TypeCode"] == 1
    assert hard["Email"] == "user@example.net" and hard["Metadata"] == {"customer": "42"}
    assert hard["Inactive"] is True and hard["CanActivate"] is True and iso(hard["BouncedAt"])

    [spam] = by_type["SpamComplaint"]
    assert set(spam) == BOUNCE_KEYS
    assert spam["Type"] == "SpamComplaint" and spam["TypeCode"] == 100001
    assert spam["CanActivate"] is False

    [opened] = by_type["Open"]
    assert set(opened) == OPEN_KEYS
    assert opened["FirstOpen"] is True and opened["Recipient"] == "user@example.net"
    assert opened["MessageID"] == message_id and opened["Tag"] == "welcome"
    assert opened["Client"]["Family"] == "Chrome" and opened["OS"]["Family"] == "Windows"
    assert opened["UserAgent"] == UA and opened["ReadSeconds"] == 0
    assert set(opened["Geo"]) >= {"City", "Country", "IP"} and iso(opened["ReceivedAt"])

    [click] = by_type["Click"]
    assert set(click) == CLICK_KEYS
    assert click["OriginalLink"] == "https://example.com/a" and click["ClickLocation"] == "HTML"
    assert click["Metadata"] == {"customer": "42", "plan": "pro"}

    added, removed = by_type["SubscriptionChange"]
    assert set(added) == set(removed) == SUBSCRIPTION_KEYS
    assert added["Recipient"] == "gone@example.net" and added["SuppressSending"] is True
    assert added["SuppressionReason"] == "ManualSuppression" and added["Origin"] == "Customer"
    assert removed["SuppressSending"] is False and iso(removed["ChangedAt"])
    assert added["ServerID"] == server.id and added["MessageStream"] == "outbound"
    assert WebhookDelivery.objects.filter(status="delivered").count() == 7
    assert WebhookAttempt.objects.filter(status_code=200).count() == 7


@pytest.mark.django_db
def test_no_webhook_no_trigger_creates_nothing(server, receiver, private_ok, queued):
    stream = get_stream(server, "outbound")
    message = outbound(server, stream)
    event = record_message_event(message, "Delivery", "user@example.net")
    fanout.enqueue_event(event.pk)
    all_triggers(stream, receiver.url, delivery_enabled=False)
    fanout.enqueue_event(event.pk)
    # Another stream's webhook does not get this stream's events.
    all_triggers(get_stream(server, "broadcast"), receiver.url)
    fanout.enqueue_event(event.pk)
    assert WebhookDelivery.objects.count() == 0 and queued == []


@pytest.mark.django_db
def test_smtp_api_error_bounces_only_with_the_server_switch(server, receiver, private_ok, queued):
    stream = get_stream(server, "outbound")
    all_triggers(stream, receiver.url)
    event = record_bounce_event(bounce(server, stream, type="SMTPApiError"))
    fanout.enqueue_event(event.pk)
    assert WebhookDelivery.objects.count() == 0
    server.enable_smtp_api_error_hooks = True
    server.save()
    fanout.enqueue_event(event.pk)
    drain(queued)
    [payload] = receiver.payloads()
    assert payload["Type"] == "SMTPApiError" and payload["TypeCode"] == 100007
    # Other bounce types never depended on it.
    server.enable_smtp_api_error_hooks = False
    server.save()
    fanout.enqueue_event(record_bounce_event(bounce(server, stream, type="SoftBounce")).pk)
    drain(queued)
    assert [p["Type"] for p in receiver.payloads()] == ["SMTPApiError", "SoftBounce"]


@pytest.mark.django_db
def test_post_first_open_only(server, receiver, private_ok, queued):
    stream = get_stream(server, "outbound")
    hook = all_triggers(stream, receiver.url, open_post_first_open_only=True)
    message = outbound(server, stream)
    for _ in range(3):
        fanout.enqueue_event(tracking.record_open(message, "user@example.net", UA).pk)
    drain(queued)
    assert [p["FirstOpen"] for p in receiver.payloads()] == [True]
    hook.open_post_first_open_only = False
    hook.save()
    fanout.enqueue_event(tracking.record_open(message, "user@example.net", UA).pk)
    drain(queued)
    assert [p["FirstOpen"] for p in receiver.payloads()] == [True, False]


@pytest.mark.django_db
def test_include_content(server, receiver, private_ok, queued):
    stream = get_stream(server, "outbound")
    hook = all_triggers(stream, receiver.url, bounce_include_content=True)
    fanout.enqueue_event(record_bounce_event(bounce(server, stream)).pk)
    fanout.enqueue_event(record_bounce_event(bounce(server, stream, type="SpamComplaint")).pk)
    drain(queued)  # the payload is built at the first try (and kept for the retries)
    hook.spam_complaint_include_content = True
    hook.bounce_include_content = False
    hook.save()
    fanout.enqueue_event(record_bounce_event(bounce(server, stream)).pk)
    fanout.enqueue_event(record_bounce_event(bounce(server, stream, type="SpamComplaint")).pk)
    drain(queued)
    got = [(p["RecordType"], p.get("Content")) for p in receiver.payloads()]
    assert got == [
        ("Bounce", "Full dump of the bounce"),
        ("SpamComplaint", None),
        ("Bounce", None),
        ("SpamComplaint", "Full dump of the bounce"),
    ]


def _delivery(server, url) -> WebhookDelivery:
    stream = get_stream(server, "outbound")
    all_triggers(stream, url)
    event = record_message_event(outbound(server, stream), "Delivery", "user@example.net")
    [delivery_id] = fanout.dispatch_event(event.pk)
    return WebhookDelivery.objects.get(pk=delivery_id)


def _make_due(delivery_id):
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


@pytest.mark.django_db
def test_retry_schedule_is_postmarks(server, receiver, private_ok, queued):
    receiver.status = 500
    delivery = _delivery(server, receiver.url)
    expected = [60, 300, 600, 600, 600, 900, 1800, 3600, 7200, 21600]
    delays = []
    for attempt in range(1, 12):
        assert deliveries.deliver(delivery.pk, attempt - 1) in ("pending", "failed")
        delivery.refresh_from_db()
        assert delivery.attempts == attempt
        if attempt <= 10:
            assert delivery.status == "pending"
            delays.append((delivery.next_attempt_at - delivery.updated_at).total_seconds())
            # The task is queued with a countdown, capped (the sweep backs up longer waits).
            assert queued.pop() == (delivery.pk, attempt, min(expected[attempt - 1], 600))
            # A task that arrives before the retry is due does nothing but wait again.
            assert deliveries.deliver(delivery.pk, attempt) == "skipped"
            assert len(receiver.requests) == attempt
            queued.clear()
            _make_due(delivery.pk)
    assert delays == expected
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert len(receiver.requests) == 11  # the first try and 10 retries
    assert WebhookAttempt.objects.filter(delivery=delivery, status_code=500).count() == 11
    # Every retry posted the very same bytes.
    assert len({r["body"] for r in receiver.requests}) == 1


@pytest.mark.django_db
def test_403_stops_retrying_at_once(server, receiver, private_ok, queued):
    receiver.status = [500, 403]
    delivery = _delivery(server, receiver.url)
    assert deliveries.deliver(delivery.pk, 0) == "pending"
    queued.clear()
    _make_due(delivery.pk)
    assert deliveries.deliver(delivery.pk, 1) == "stopped"
    delivery.refresh_from_db()
    assert delivery.status == "stopped" and delivery.next_attempt_at is None
    assert queued == []
    assert deliveries.requeue_due(grace_seconds=0) == 0
    assert deliveries.deliver(delivery.pk) == "skipped" and len(receiver.requests) == 2
    [last, first] = WebhookAttempt.objects.filter(delivery=delivery)
    assert (first.status_code, last.status_code) == (500, 403)


@pytest.mark.django_db
def test_nothing_is_lost_across_a_receiver_outage(server, private_ok, queued):
    port = free_port()
    stream = get_stream(server, "outbound")
    all_triggers(stream, f"http://127.0.0.1:{port}/hook")
    messages = [outbound(server, stream) for _ in range(5)]
    for message in messages:
        fanout.enqueue_event(record_message_event(message, "Delivery", "u@example.net").pk)
    assert drain(queued) == ["pending"] * 5  # nobody listens: connection refused
    attempts = WebhookAttempt.objects.all()
    assert attempts.count() == 5
    assert all(a.status_code is None and "Connection" in a.error for a in attempts)
    queued.clear()  # the retry tasks are lost, too (a broker restart)
    receiver = Receiver(port=port)
    try:
        WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))
        assert deliveries.requeue_due() == 5
        assert drain(queued) == ["delivered"] * 5
        assert deliveries.requeue_due(grace_seconds=0) == 0
        got = sorted(p["MessageID"] for p in receiver.payloads())
        assert got == sorted(str(m.message_id) for m in messages)
    finally:
        receiver.stop()
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


@pytest.mark.django_db
def test_the_sweep_dispatches_events_whose_dispatch_was_lost(server, receiver, private_ok, queued):
    stream = get_stream(server, "outbound")
    all_triggers(stream, receiver.url)
    message = outbound(server, stream)
    # Recorded, but enqueue_event never ran (the process died right after the commit).
    event = MessageEvent.objects.create(
        server=server, stream=stream, outbound=message, message_id=message.message_id,
        type="Delivery", recipient="user@example.net", occurred_at=timezone.now(),
    )  # fmt: skip
    assert deliveries.dispatch_missed_events() == 0  # younger than the grace period: not yet
    later = timezone.now() + timedelta(minutes=2)
    assert deliveries.dispatch_missed_events(now=later) == 1
    assert deliveries.dispatch_missed_events(now=later) == 0
    drain(queued)
    assert [p["MessageID"] for p in receiver.payloads()] == [str(event.message_id)]
    event.refresh_from_db()
    assert event.webhooks_pending_since is None  # its mark is cleared: dispatched


@pytest.mark.django_db
def test_a_lost_task_of_a_crashed_worker_is_found_after_its_lease(server, receiver, private_ok):
    delivery = _delivery(server, receiver.url)
    now = timezone.now()
    # A worker claimed it and died: nothing happens until the lease runs out.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        leased_until=now + timedelta(seconds=50), next_attempt_at=now - timedelta(minutes=5)
    )
    assert deliveries.deliver(delivery.pk) == "skipped"
    assert deliveries.requeue_due() == 0
    later = now + timedelta(minutes=1)
    calls = []
    original = fanout.publish
    fanout.publish = lambda d, a, countdown=0: calls.append((d, a))
    try:
        assert deliveries.requeue_due(now=later) == 1
    finally:
        fanout.publish = original
    assert calls == [(delivery.pk, 0)]


# --- signature ------------------------------------------------------------------------------------

# The snippet of docs/user-guide/webhooks.md, verbatim (postmark_site/tests/test_docs.py checks it).
SNIPPET = '''
import hashlib
import hmac
import time


def verify_webhook(secret: str, body: bytes, headers, tolerance: int = 300) -> bool:
    """True when the POST comes from the service: ``body`` is the raw request body (bytes,
    before any JSON parsing), ``headers`` the request headers."""
    timestamp = headers.get("X-Webhook-Timestamp", "")
    signature = headers.get("X-Webhook-Signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False  # missing, or too old: a replay
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + mac.hexdigest(), signature)
'''


def _snippet():
    namespace: dict = {}
    exec(SNIPPET, namespace)  # noqa: S102 - the documented snippet, run as a receiver would
    return namespace["verify_webhook"]


@pytest.mark.django_db
def test_signature_verifies_with_the_readme_snippet(server, receiver, private_ok, queued):
    delivery = _delivery(server, receiver.url)
    deliveries.deliver(delivery.pk, 0)
    [request] = receiver.requests
    secret = delivery.webhook.signing_secret
    assert secret.startswith("whsec_") and len(secret) > 30
    headers = request["headers"]
    assert headers["X-Webhook-Signature"].startswith("sha256=")
    assert headers["X-Webhook-Delivery"] == str(delivery.pk)
    verify = _snippet()
    assert verify(secret, request["body"], headers)
    assert signing.verify_signature(
        secret, request["body"], headers["X-Webhook-Signature"], headers["X-Webhook-Timestamp"]
    )
    # Any change to the body, the secret or the timestamp fails.
    assert not verify(secret, request["body"] + b" ", headers)
    assert not verify("whsec_other", request["body"], headers)
    old = dict(headers, **{"X-Webhook-Timestamp": str(int(time.time()) - 3600)})
    assert not verify(secret, request["body"], old)
    mac = hmac.new(secret.encode(), old["X-Webhook-Timestamp"].encode() + b"." + request["body"],
                   hashlib.sha256)  # fmt: skip
    stale = dict(old, **{"X-Webhook-Signature": "sha256=" + mac.hexdigest()})
    assert not verify(secret, request["body"], stale)  # a valid MAC, but too old
    # The secret is not stored in the clear.
    assert secret not in Webhook.objects.values_list("signing_secret_encrypted", flat=True)[0]


# --- basic auth, custom headers ------------------------------------------------------------------


@pytest.mark.django_db
def test_basic_auth_and_custom_headers_are_sent(server, receiver, private_ok, queued):
    stream = get_stream(server, "outbound")
    hook = all_triggers(stream, receiver.url, http_headers=[{"Name": "X-Env", "Value": "prod"}])
    hook.http_auth_username, hook.http_auth_password = "hooks", "s3cr:et"
    hook.save()
    fanout.enqueue_event(
        record_message_event(outbound(server, stream), "Delivery", "user@example.net").pk
    )
    drain(queued)
    headers = receiver.requests[0]["headers"]
    assert headers["X-Env"] == "prod"
    assert base64.b64decode(headers["Authorization"].split()[1]) == b"hooks:s3cr:et"
    assert headers["Host"] == f"127.0.0.1:{receiver.port}"


# --- SSRF guard ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
        "224.0.0.1", "240.0.0.1", "255.255.255.255", "100.64.0.1", "::1", "::", "fe80::1",
        "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address):
    assert guard.address_refused(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert guard.address_refused(address) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook", "http://localhost:8080/hook", "https://[::1]/hook",
        "http://[::ffff:127.0.0.1]/x", "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/", "http://0.0.0.0/", "ftp://example.com/x", "file:///etc/passwd",
        "http:///nohost", "javascript:alert(1)",
    ],
)  # fmt: skip
def test_check_url_refuses(settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(guard.UnsafeUrl):
        guard.check_url(url)


def test_check_url_allows_private_when_the_operator_says_so(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    assert guard.check_url("http://localhost:8080/hook").host == "localhost"
    with pytest.raises(guard.UnsafeUrl):
        guard.check_url("ftp://localhost/x")  # never another scheme


def test_an_international_host_is_looked_up_in_the_form_mail_is_routed_by():
    """IDNA 2008 (core.addresses), as for mail domains: faß.de is xn--fa-hia.de, not fass.de."""
    assert guard.parse_url("https://Faß.de/hook").host == "xn--fa-hia.de"
    assert guard.parse_url("https://[2001:db8::1]/hook").host == "2001:db8::1"
    with pytest.raises(guard.UnsafeUrl, match="not a valid host name"):
        guard.parse_url("https://a..example/hook")


@pytest.mark.django_db
def test_send_time_guard_refuses_and_connects_to_the_checked_address(
    server, receiver, settings, queued, monkeypatch
):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    delivery = _delivery(server, f"http://localhost:{receiver.port}/hook")
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False  # e.g. the DNS answer changed since
    assert deliveries.deliver(delivery.pk, 0) == "failed"  # at once: retrying cannot help
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None and "loopback" in attempt.error
    assert "127.0.0.1" not in attempt.error  # the internal address is never told
    assert "public addresses" in attempt.error and receiver.requests == []
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="pending")
    # DNS rebinding: the name is resolved once, checked, and that very address is dialled while
    # the Host header keeps the name.
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])
    monkeypatch.setattr(guard, "resolve", lambda host, port: next(answers))
    _make_due(delivery.pk)
    assert deliveries.deliver(delivery.pk, 1) == "delivered"
    assert receiver.requests[0]["headers"]["Host"] == f"localhost:{receiver.port}"


# --- admin ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_pages_and_retry_now(admin_client, server, receiver, private_ok, queued):
    from django.urls import reverse

    receiver.status = 500
    delivery = _delivery(server, receiver.url)
    deliveries.deliver(delivery.pk, 0)
    queued.clear()
    page = admin_client.get(reverse("admin:webhooks_webhook_change", args=[delivery.webhook_id]))
    content = page.content.decode()
    assert page.status_code == 200
    assert delivery.webhook.signing_secret in content and "Delivery" in content
    assert "user@example.net" in content and ">500<" in content
    page = admin_client.get(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200 and "webhook attempt" in page.content.decode().lower()
    assert admin_client.get(reverse("admin:webhooks_webhookdelivery_changelist")).status_code == 200
    receiver.status = 200
    response = admin_client.post(
        reverse("admin:webhooks_webhookdelivery_changelist"),
        {"action": "retry_now", "_selected_action": [delivery.pk]},
    )
    assert response.status_code == 302
    assert queued == [(delivery.pk, None, 0)]
    assert drain(queued) == ["delivered"]


@pytest.mark.django_db
def test_admin_form_strips_credentials_and_refuses_private_urls(admin_client, server, settings):
    from django.urls import reverse

    stream = get_stream(server, "outbound")
    url = reverse("admin:webhooks_webhook_add")
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    form = {"stream": stream.pk, "url": "http://127.0.0.1:9/hook", "http_headers": "[]"}
    response = admin_client.post(url, form)
    assert response.status_code == 200 and "public addresses" in response.content.decode()
    assert not Webhook.objects.exists()
    form["url"] = "https://hooks:pa%40ss@93.184.216.34/hook"
    form["delivery_enabled"] = "on"
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    hook = Webhook.objects.get()
    assert hook.url == "https://93.184.216.34/hook"
    assert (hook.http_auth_username, hook.http_auth_password) == ("hooks", "pa@ss")
