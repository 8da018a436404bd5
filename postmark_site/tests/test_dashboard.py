"""The operator dashboard and the admin pages around it: numbers, charts, SMTP configuration
details, tokens, suppressions, bounces, the activity list and timelines, query counts."""

import csv
import io
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bounces.services import record_bounce
from conftest import accepted_submission
from messages.events import record_message_event
from messages.models import MessageEvent, OutboundMessage, Recipient, Submission
from postmark_site.charts import chart_svg
from stats import outbound
from streams import listeners
from streams.models import SmtpToken, Suppression
from streams.services import create_server, create_smtp_token, get_stream
from streams.suppressions import suppress

DUMP = (
    "ErrorCode: 406\r\nMessage: You tried to send to recipient(s) that have been marked as "
    "inactive. Found inactive addresses: gone@example.net.\r\n\r\n"
    "From: app@example.com\r\nTo: gone@example.net\r\nSubject: Hi\r\n\r\nHello\r\n"
)


def make_message(
    server,
    stream_id="outbound",
    *,
    ago=timedelta(hours=1),
    to="user@example.net",
    subject="Hello",
    tag="",
    submission=False,
    delivered=False,
):
    stream = get_stream(server, stream_id)
    when = timezone.now() - ago
    message_id = uuid.uuid4()
    sub = None
    if submission:
        sub = accepted_submission(
            server, b"Subject: x\r\n\r\nx", [to], message_id=message_id, stream=stream,
            credential="k", status=Submission.Status.PROCESSED, received_at=when,
        )  # fmt: skip
    message = OutboundMessage.objects.create(
        message_id=message_id, submission=sub, server=server, stream=stream,
        from_address="app@example.com", to=[to], recipients=[to], subject=subject, tag=tag,
        content=b"From: app@example.com\r\nSubject: " + subject.encode() + b"\r\n\r\nHi\r\n",
        size=40, received_at=when,
    )  # fmt: skip
    Recipient.objects.create(message=message, email=to)
    if delivered:
        record_message_event(
            message, MessageEvent.Type.DELIVERY, to, details="250 ok", occurred_at=when
        )
    return message


def make_bounce(
    server,
    type="HardBounce",
    *,
    ago=timedelta(hours=1),
    email="gone@example.net",
    stream_id="outbound",
    content="",
    details="550 no such user",
    inactive=None,
):
    return record_bounce(
        server=server, stream=get_stream(server, stream_id), message_stream=stream_id, type=type,
        email=email, details=details, content=content, bounced_at=timezone.now() - ago,
        inactive=type in ("HardBounce", "SpamComplaint") if inactive is None else inactive,
        can_activate=type == "HardBounce",
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_dashboard_cache():
    """The dashboard caches finished days; every test starts without them."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff(admin_client):
    return admin_client


# --- Numbers ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_chart_is_svg_with_escaped_title(server):
    make_message(server)
    data = outbound.collect([server.pk])
    svg = str(chart_svg(data.servers[0].series["7d"], "7d", title="<b>x</b>"))
    assert svg.startswith("<svg") and svg.count("<polyline") == 3
    assert "&lt;b&gt;x&lt;/b&gt;" in svg and "<b>" not in svg


@pytest.mark.django_db
def test_dashboard_page_queries_do_not_grow_with_servers(staff, django_assert_max_num_queries):
    def fill(n):
        for i in range(n):
            server = create_server(f"Server {uuid.uuid4().hex[:8]}")
            make_message(server, delivered=True)
            make_bounce(server, "SMTPApiError", content=DUMP, email=f"e{i}@example.net")

    fill(1)
    staff.get(reverse("admin:dashboard"))  # warm the session and content types
    with django_assert_max_num_queries(16):
        first = staff.get(reverse("admin:dashboard"))
    fill(6)
    with django_assert_max_num_queries(16):
        response = staff.get(reverse("admin:dashboard") + "?window=30d")
    assert first.status_code == response.status_code == 200
    page = response.content.decode()
    assert page.count('class="pm-chart"') == 8  # all servers + 7 servers
    assert "Latest SMTP API errors" in page and "e5@example.net" in page


# --- Server page ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_smtp_configuration_details(staff, server, settings):
    settings.SMTP_LISTEN = [
        "transactional=0.0.0.0:2525",
        "transactional=0.0.0.0:587",
        "transactional+tls=0.0.0.0:465",
        "broadcast=0.0.0.0:2526",
    ]
    settings.SMTP_PUBLIC_HOST = "smtp.mail.example"
    settings.SMTP_PUBLIC_BROADCAST_HOST = "smtp-broadcasts.mail.example"
    page = staff.get(reverse("admin:servers_server_change", args=[server.pk])).content.decode()
    assert "View SMTP configuration details" in page
    for text in ("smtp.mail.example", "smtp-broadcasts.mail.example", "<code>587</code>",
                 "<code>465</code>", "STARTTLS", "X-PM-Message-Stream", "access key",
                 "CRAM-MD5", "DIGEST-MD5", "PLAIN", "LOGIN", "in clear unless TLS is on",
                 server.api_tokens[0]):  # fmt: skip
        assert text in page, text
    # With a server token the user name is the token: no mechanism keeps it off the wire.
    words = " ".join(page.split())
    assert "crosses the wire with every method, CRAM-MD5 and DIGEST-MD5 included" in words
    # Near the top, above the form's fieldsets (not under Save/Delete), with the server's own
    # values in its examples and a copy button for each.
    assert page.index('id="smtp-configuration"') < page.index("<fieldset")
    assert f'EMAIL_HOST_USER = EMAIL_HOST_PASSWORD = "{server.api_tokens[0]}"' in page
    assert 'EMAIL_HOST = "smtp.mail.example"' in page and "EMAIL_PORT = 2525" in page
    for target in ("smtp-host-1", "server-token-1", "smtp-example-swaks", "smtp-example-django"):
        assert f'data-copy-target="{target}"' in page, target
    endpoints = listeners.smtp_endpoints()
    assert [(e.kind, e.host, e.starttls_ports, e.tls_ports) for e in endpoints] == [
        ("transactional", "smtp.mail.example", [2525, 587], [465]),
        ("broadcast", "smtp-broadcasts.mail.example", [2526], []),
    ]


@pytest.mark.django_db
def test_endpoint_hosts_fall_back_to_hostname_then_request_host(settings):
    settings.SMTP_LISTEN = ["transactional=0.0.0.0:25", "broadcast=127.0.0.1:26"]
    settings.SMTP_HOSTNAME = ""
    assert [e.host for e in listeners.smtp_endpoints("admin.example")] == [
        "admin.example",
        "127.0.0.1",
    ]
    settings.SMTP_HOSTNAME = "mx.example"
    assert {e.host for e in listeners.smtp_endpoints("admin.example")} == {"mx.example"}


@pytest.mark.django_db
def test_smtp_switch_needs_post_and_csrf(admin_user, server):
    url = reverse("admin:servers_server_smtp", args=[server.pk])
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(url, {"enabled": "off"}).status_code == 403
    assert strict.get(url).status_code == 405
    page = strict.get(reverse("admin:servers_server_change", args=[server.pk]))
    token = page.cookies["csrftoken"].value
    response = strict.post(url, {"enabled": "off", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.smtp_api_activated is False
    page = strict.get(response["Location"]).content.decode()
    assert "SMTP access: <strong>Off</strong>" in page and "Enable SMTP" in page


# --- Stream page: tokens, suppressions ------------------------------------------------------------


@pytest.mark.django_db
def test_stream_page_panels_and_token_revoke(staff, server):
    stream = get_stream(server, "outbound")
    token, secret = create_smtp_token(stream)
    page = staff.get(reverse("admin:streams_messagestream_change", args=[stream.pk]))
    text = page.content.decode()
    assert token.access_key in text and secret not in text
    assert f"/admin/webhooks/webhook/?stream__id__exact={stream.pk}" in text
    assert "Tracking" in text and "Suppressions (0)" in text
    revoke = reverse("admin:streams_messagestream_token_revoke", args=[stream.pk, token.pk])
    assert revoke in text
    assert staff.post(revoke).status_code == 302
    token.refresh_from_db()
    assert token.revoked
    other = get_stream(server, "broadcast")
    assert (
        staff.post(
            reverse("admin:streams_messagestream_token_revoke", args=[other.pk, token.pk])
        ).status_code
        == 404
    )


@pytest.mark.django_db
def test_secret_page_has_copy_button_and_drops_its_address(staff, server):
    stream = get_stream(server, "outbound")
    response = staff.post(reverse("admin:streams_smtptoken_add"), {"stream": stream.pk})
    token = SmtpToken.objects.get(stream=stream)
    text = response.content.decode()
    assert 'data-copy-target="secret-key"' in text
    assert reverse("admin:streams_smtptoken_change", args=[token.pk]) in text  # replaceState
    assert token.secret in text
    assert (
        token.secret
        not in staff.get(
            reverse("admin:streams_smtptoken_change", args=[token.pk])
        ).content.decode()
    )


@pytest.mark.django_db
def test_suppressions_add_remove_export(staff, server):
    stream = get_stream(server, "outbound")
    add = reverse("admin:streams_messagestream_suppression_add", args=[stream.pk])
    remove = reverse("admin:streams_messagestream_suppression_remove", args=[stream.pk])
    assert staff.post(add, {"email": " Someone@Example.NET "}).status_code == 302
    assert staff.post(add, {"email": "not an address"}).status_code == 302
    suppress(stream, "=cmd@example.net", Suppression.Reason.HARD_BOUNCE, "Recipient")
    suppress(stream, "spam@example.net", Suppression.Reason.SPAM_COMPLAINT, "Recipient")
    assert set(Suppression.objects.values_list("email", flat=True)) == {
        "someone@example.net", "=cmd@example.net", "spam@example.net"
    }  # fmt: skip
    assert Suppression.objects.get(email="someone@example.net").origin == "Admin"

    listing = staff.get(reverse("admin:streams_messagestream_suppressions", args=[stream.pk]))
    assert b"someone@example.net" in listing.content and b"3 addresses" in listing.content
    found = staff.get(
        reverse("admin:streams_messagestream_suppressions", args=[stream.pk])
        + "?q=spam@example.net"
    )
    assert b"someone@example.net" not in found.content

    export = staff.get(reverse("admin:streams_messagestream_suppressions_csv", args=[stream.pk]))
    assert export["Content-Type"].startswith("text/csv")
    assert "attachment" in export["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0] == ["EmailAddress", "SuppressionReason", "Origin", "CreatedAt"]
    assert {r[0] for r in rows[1:]} == {
        "someone@example.net",
        "'=cmd@example.net",
        "spam@example.net",
    }

    staff.post(remove, {"email": "someone@example.net"})
    staff.post(remove, {"email": "spam@example.net"})  # spam complaints stay
    assert set(Suppression.objects.values_list("email", flat=True)) == {
        "=cmd@example.net", "spam@example.net"
    }  # fmt: skip


# --- Bounces ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_smtp_api_error_page_and_raw_source(staff, server):
    bounce = make_bounce(server, "SMTPApiError", content=DUMP, details="Inactive recipient")
    page = staff.get(reverse("admin:bounces_bounce_change", args=[bounce.pk])).content.decode()
    assert 'id="smtp-api-error"' in page
    assert "Found inactive addresses: gone@example.net." in page
    assert 'class="pm-raw"' in page and "Subject: Hi" in page
    assert 'id="reactivate" disabled' in page
    dump = staff.get(reverse("admin:bounces_bounce_dump", args=[bounce.pk]))
    assert dump["Content-Type"] == "message/rfc822"
    assert dump["Content-Disposition"] == f'attachment; filename="bounce-{bounce.pk}.eml"'
    assert dump.content == DUMP.encode()
    inline = staff.get(reverse("admin:bounces_bounce_dump", args=[bounce.pk]) + "?inline=1")
    assert (
        inline["Content-Type"].startswith("text/plain")
        and "sandbox" in inline["Content-Security-Policy"]
    )
    empty = make_bounce(server, "HardBounce", content="")
    assert staff.get(reverse("admin:bounces_bounce_dump", args=[empty.pk])).status_code == 404


@pytest.mark.django_db
def test_reactivate_hard_bounce_but_not_spam_complaint(staff, server):
    stream = get_stream(server, "outbound")
    hard = make_bounce(server, "HardBounce", email="hard@example.net")
    suppress(stream, "hard@example.net", Suppression.Reason.HARD_BOUNCE, "Recipient", bounce=hard)
    spam = make_bounce(server, "SpamComplaint", email="spam@example.net")
    suppress(stream, "spam@example.net", Suppression.Reason.SPAM_COMPLAINT, "Recipient")

    page = staff.get(reverse("admin:bounces_bounce_change", args=[hard.pk])).content.decode()
    assert 'id="reactivate">' in page or 'id="reactivate" >' in page
    response = staff.post(reverse("admin:bounces_bounce_reactivate", args=[hard.pk]), follow=True)
    assert b"is active again" in response.content
    hard.refresh_from_db()
    assert hard.inactive is False
    assert not Suppression.objects.filter(email="hard@example.net").exists()

    page = staff.get(reverse("admin:bounces_bounce_change", args=[spam.pk])).content.decode()
    assert 'id="reactivate" disabled' in page and "Spam complaints cannot be reactivated" in page
    response = staff.post(reverse("admin:bounces_bounce_reactivate", args=[spam.pk]), follow=True)
    assert b"cannot be activated" in response.content
    spam.refresh_from_db()
    assert spam.inactive is True


@pytest.mark.django_db
def test_bounce_list_filters(staff, server):
    make_bounce(server, "HardBounce", email="old@example.net", ago=timedelta(days=10))
    b = make_bounce(server, "SoftBounce", email="new@example.net", ago=timedelta(hours=1))
    b.tag = "welcome"
    b.save()
    url = reverse("admin:bounces_bounce_changelist")
    today = b.bounced_at.date().isoformat()  # UTC
    page = staff.get(url + f"?bounced_at__date__gte={today}").content.decode()
    assert "new@example.net" in page and "old@example.net" not in page
    page = staff.get(url + "?email__icontains=old").content.decode()
    assert "old@example.net" in page and "new@example.net" not in page
    page = staff.get(url + "?tag=welcome&inactive__exact=0").content.decode()
    assert "new@example.net" in page and "old@example.net" not in page
    assert 'id="bounce-filter"' in page


# --- Messages -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_activity_list_search_and_timeline(staff, server):
    message = make_message(server, subject="Order shipped", tag="shipping", submission=True,
                           delivered=True)  # fmt: skip
    make_message(server, subject="Other mail")
    url = reverse("admin:outbound_outboundmessage_changelist")
    page = staff.get(url).content.decode()
    assert "Order shipped" in page and "Other mail" in page
    assert "Order shipped" in staff.get(url + f"?q={message.message_id}").content.decode()
    found = staff.get(url + "?q=shipping").content.decode()
    assert "Order shipped" in found and "Other mail" not in found
    detail = staff.get(reverse("admin:outbound_outboundmessage_change", args=[message.pk]))
    text = detail.content.decode()
    for label in ("Accepted", "Processed", "Delivered"):
        assert f"<strong>{label}</strong>" in text
    assert text.index("<strong>Accepted</strong>") < text.index("<strong>Delivered</strong>")
    source = staff.get(reverse("admin:outbound_outboundmessage_source", args=[message.pk]))
    assert source["Content-Type"] == "message/rfc822" and b"Order shipped" in source.content


LIST_PAGES = [
    "admin:servers_server_changelist",
    "admin:servers_servertoken_changelist",
    "admin:streams_messagestream_changelist",
    "admin:streams_smtptoken_changelist",
    "admin:streams_ipcredential_changelist",
    "admin:outbound_submission_changelist",
    "admin:outbound_outboundmessage_changelist",
    "admin:bounces_bounce_changelist",
]


@pytest.mark.django_db
@pytest.mark.parametrize("name", LIST_PAGES)
def test_list_pages_make_few_queries(staff, name, django_assert_max_num_queries):
    def fill():
        server = create_server(f"S {uuid.uuid4().hex[:8]}")
        for i in range(5):
            make_message(server, submission=True, delivered=True, to=f"u{i}@example.net")
            make_bounce(server, "HardBounce", email=f"b{i}@example.net")
        create_smtp_token(get_stream(server, "outbound"))

    fill()
    url = reverse(name)
    assert staff.get(url).status_code == 200
    with django_assert_max_num_queries(12) as few:
        staff.get(url)
    for _ in range(3):
        fill()
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = staff.get(url)
    assert response.status_code == 200


@pytest.mark.django_db
def test_the_dashboard_flags_sandbox_servers(staff):
    sandbox = create_server("Try-out", delivery_type="Sandbox")
    live = create_server("Production", delivery_type="Live")
    page = staff.get(reverse("admin:dashboard")).content.decode()
    sandbox_panel = page.split(f'id="server-{sandbox.pk}"')[1].split("</section>")[0]
    live_panel = page.split(f'id="server-{live.pk}"')[1].split("</section>")[0]
    assert 'class="pm-badge pm-sandbox"' in sandbox_panel and "not delivered" in sandbox_panel
    assert "pm-sandbox" not in live_panel


@pytest.mark.django_db
def test_signing_in_lands_on_the_dashboard(admin_user):
    client = Client()
    form = client.get("/admin/login/")
    assert 'name="next" value="/admin/dashboard/"' in form.content.decode()
    answer = client.post("/admin/login/", {"username": "admin", "password": "password"})
    assert answer.status_code == 302 and answer["Location"] == "/admin/dashboard/"
    # A next of its own is kept.
    client.logout()
    answer = client.post(
        "/admin/login/?next=/admin/system/",
        {"username": "admin", "password": "password", "next": "/admin/system/"},
    )
    assert answer["Location"] == "/admin/system/"
