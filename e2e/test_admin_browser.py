"""The operator's path through the admin in a real browser, against a real gateway:
log in, create a server, switch SMTP on, generate a token, send with it over SMTP, find the message
in the activity list, read an SMTP API error and its raw source, reactivate a hard bounce.
Any console error or page error in the browser fails the test."""

import random
import re
import smtplib
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import insecure, send, start_gateway
from e2e.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fresh_dashboard_cache():
    """The dashboard caches finished days; every test starts without them."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def seed_history(name="Demo shop", days=30):
    """A month of plausible traffic so the dashboard has something to draw (bulk inserts)."""
    from bounces.models import Bounce
    from messages.models import MessageEvent, OutboundMessage
    from streams.services import create_server, get_stream

    server = create_server(name)
    rng = random.Random(7)
    now = timezone.now()
    messages, events, bounces = [], [], []
    for stream_id, scale in (("outbound", 1.0), ("broadcast", 0.4)):
        stream = get_stream(server, stream_id)
        for hour in range(days * 24):
            when = now - timedelta(hours=hour, minutes=rng.randint(0, 59))
            for _ in range(int(rng.randint(0, 4) * scale * (1.4 if hour % 24 > 8 else 0.6))):
                message_id = uuid.uuid4()
                to = f"user{rng.randint(1, 5000)}@example.net"
                messages.append(OutboundMessage(
                    message_id=message_id, server=server, stream=stream, from_address="a@b.example",
                    to=[to], recipients=[to], subject="Your order", tag="orders", content=b"x",
                    received_at=when, status="sent",
                ))  # fmt: skip
                if rng.random() < 0.04:
                    bounces.append(Bounce(
                        server=server, stream=stream, message_stream=stream_id, type="HardBounce",
                        message_id=message_id, email=to, bounced_at=when, inactive=True,
                        can_activate=True, details="550 5.1.1 no such user",
                    ))  # fmt: skip
                else:
                    events.append(MessageEvent(
                        server=server, stream=stream, message_id=message_id, type="Delivery",
                        recipient=to, occurred_at=when,
                    ))  # fmt: skip
    OutboundMessage.objects.bulk_create(messages, batch_size=500)
    MessageEvent.objects.bulk_create(events, batch_size=500)
    Bounce.objects.bulk_create(bounces, batch_size=500)
    return server


def test_operator_path(browser_page, live_server, django_user_model, tmp_path):
    from bounces.models import Bounce
    from bounces.services import record_bounce
    from messages.models import OutboundMessage, Submission
    from messages.processing import process_submission
    from servers.models import Server
    from streams.models import SmtpToken, Suppression
    from streams.services import get_stream
    from streams.suppressions import suppress

    page, errors = browser_page
    django_user_model.objects.create_superuser("operator", "op@example.com", "browser-pass-1")
    seed_history()

    # Log in; land on the dashboard.
    page.goto("/admin/login/?next=/admin/dashboard/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "browser-pass-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/dashboard/")
    assert page.locator("svg.pm-chart").count() >= 2
    screenshot(page, "dashboard")
    page.click("button[name=window][value='30d']")
    page.wait_for_url("**window=30d**")
    screenshot(page, "dashboard-30d")

    # Create a server with SMTP off, then switch it on from its page.
    page.goto("/admin/servers/server/add/")
    page.fill("#id_name", "Browser shop")
    page.uncheck("#id_smtp_api_activated")
    page.click("input[name=_continue]")
    page.wait_for_selector("#smtp-status")
    assert "Off" in page.inner_text("#smtp-status")
    page.click("#smtp-switch")
    page.wait_for_selector("#smtp-status:has-text('On')")
    server = Server.objects.get(name="Browser shop")
    assert server.smtp_api_activated
    page.click("#smtp-configuration summary")
    config = page.locator("#smtp-configuration")
    assert config.get_attribute("open") is not None
    for text in ("STARTTLS", "CRAM-MD5", "DIGEST-MD5", "PLAIN", "LOGIN", "X-PM-Message-Stream"):
        assert text in config.inner_text()
    screenshot(page, "server-page")
    screenshot(page, "smtp-configuration", locator=config)

    # Generate an SMTP token for the outbound stream: the secret is shown once.
    stream = get_stream(server, "outbound")
    page.goto(f"/admin/streams/messagestream/{stream.pk}/change/")
    page.click("#generate-token")  # no form: the stream is the page's
    access_key = page.inner_text("#access-key").strip()
    secret = page.inner_text("#secret-key").strip()
    token = SmtpToken.objects.get(access_key=access_key)
    assert token.secret == secret
    page.click("#copy-secret")
    page.wait_for_selector(".pm-copy-status:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "smtp-token-secret")
    assert page.url.endswith(f"/admin/streams/smtptoken/{token.pk}/change/")
    page.reload()
    assert access_key in page.content() and secret not in page.content()
    assert SmtpToken.objects.filter(stream=stream).count() == 1  # the reload posted nothing
    page.goto(f"/admin/streams/messagestream/{stream.pk}/change/")
    assert access_key in page.content() and secret not in page.content()
    screenshot(page, "stream-page")

    # A hard bounce that made an address inactive.
    hard = record_bounce(
        server=server, stream=stream, message_stream="outbound", type="HardBounce",
        email="gone@example.net", details="550 5.1.1 <gone@example.net>: no such user",
        content="Reporting-MTA: dns; mx.example.net\r\nStatus: 5.1.1\r\n", inactive=True,
        can_activate=True,
    )  # fmt: skip
    suppress(stream, "gone@example.net", Suppression.Reason.HARD_BOUNCE, "Recipient", bounce=hard)

    # Send with the token over SMTP (STARTTLS, AUTH PLAIN), then process as the worker would.
    gateway = start_gateway(tmp_path / "runsmtp.log", SMTP_AUTH_FAILURE_LIMIT=1000)
    try:
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=20) as client:
            client.ehlo("browser.example")
            client.starttls(context=insecure())
            client.ehlo("browser.example")
            client.login(access_key, secret)
            ok_id = send(
                client,
                b"From: Shop <shop@example.com>\r\nTo: user@example.net\r\n"
                b"Subject: Browser hello\r\nX-PM-Tag: browser\r\n\r\nHello!\r\n",
            )
            error_id = send(
                client,
                b"From: Shop <shop@example.com>\r\nTo: gone@example.net\r\n"
                b"Subject: To the inactive\r\n\r\nAnyone there?\r\n",
                rcpts=("gone@example.net",),
            )
    finally:
        gateway.process.stop()
    for submission_id in Submission.objects.filter(server=server).values_list("id", flat=True):
        process_submission(submission_id)
    message = OutboundMessage.objects.get(message_id=ok_id)
    error = Bounce.objects.get(message_id=error_id, type="SMTPApiError")

    # The activity list and the message's timeline.
    page.goto("/admin/outbound/outboundmessage/")
    page.click("text=Browser hello")
    page.wait_for_selector("#timeline")
    timeline = page.inner_text("#timeline")
    assert "Accepted" in timeline and "Processed" in timeline and "127.0.0.1" in timeline
    assert page.url.endswith(f"/admin/outbound/outboundmessage/{message.pk}/change/")
    screenshot(page, "message-timeline")
    page.goto("/admin/outbound/outboundmessage/")
    screenshot(page, "activity")

    # The SMTP API error: its long message up front, its raw source, the .eml download.
    page.goto("/admin/bounces/bounce/?type__exact=SMTPApiError")
    screenshot(page, "bounces")
    page.locator("#result_list tr", has_text="gone@example.net").locator("th a").first.click()
    page.wait_for_selector("#smtp-api-error")
    assert "inactive" in page.inner_text("#smtp-api-error .pm-error-message")
    assert "Subject: To the inactive" in page.inner_text("#raw-source-text")
    assert page.is_disabled("#reactivate")
    with page.expect_download() as download:
        page.click("#download-eml")
    saved = tmp_path / "dump.eml"
    download.value.save_as(saved)
    assert download.value.suggested_filename == f"bounce-{error.pk}.eml"
    assert "Subject: To the inactive" in saved.read_text()
    screenshot(page, "smtp-api-error")

    # Reactivate the hard bounce.
    page.goto(f"/admin/bounces/bounce/{hard.pk}/change/")
    assert page.is_enabled("#reactivate")
    page.click("#reactivate")
    page.wait_for_selector(".messagelist .success")
    assert re.search("active again", page.inner_text(".messagelist"))
    assert page.is_disabled("#reactivate")
    hard.refresh_from_db()
    assert hard.inactive is False
    assert not Suppression.objects.filter(stream=stream, email="gone@example.net").exists()

    assert errors == [], "\n".join(errors)


def test_system_page(browser_page, live_server, django_user_model):
    """The operator opens System from the navigation and sees where mail waits."""
    from postmark_site.tests.system_seed import seed_waiting_work
    from streams.services import create_server

    page, errors = browser_page
    django_user_model.objects.create_superuser("operator", "op@example.com", "browser-pass-1")
    seed_waiting_work(create_server("Demo shop"))

    page.goto("/admin/login/?next=/admin/dashboard/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "browser-pass-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/dashboard/")
    page.click("#nav-system")
    page.wait_for_url("**/admin/system/")
    assert page.inner_text("#gauge-recipients_deferred .count") == "6"
    assert page.inner_text("#gauge-submissions_waiting .count") == "3"
    # One sparkline per queue gauge (submissions, deliveries, webhooks, inbound messages).
    assert page.locator("svg.pm-spark").count() == page.locator("[id^=gauge-]").count()
    assert "slow.example" in page.inner_text("#system-destinations")
    webhooks = page.inner_text("#system-webhooks")
    assert "https://crm.example.org/in" in webhooks and "s3cret" not in webhooks
    screenshot(page, "system")

    # The oldest waiting submission is one click away.
    page.click("#gauge-submissions_waiting a")
    page.wait_for_url("**/admin/outbound/submission/*/change/")

    assert errors == [], "\n".join(errors)


def test_domain_page_verify_now(browser_page, live_server, django_user_model, settings):
    """Add a domain, copy its DKIM record, publish the records in a (local) DNS server, press
    Verify now: every record shows as verified; rotate the key, and a sender signature is
    confirmed by the operator."""
    from delivery.tests.sinks import DnsServer
    from domains.models import Domain, SenderSignature
    from domains.services import create_sender

    page, errors = browser_page
    django_user_model.objects.create_superuser("operator", "op@example.com", "browser-pass-1")
    settings.BOUNCE_DOMAIN = settings.SPF_INCLUDE_DOMAIN = "bounces.mail.example"
    page.goto("/admin/login/?next=/admin/domains/domain/add/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "browser-pass-1")
    page.click("input[type=submit]")
    page.fill("#id_name", "shop.example")
    page.click("input[name=_continue]")
    page.wait_for_selector("#dns-records")
    domain = Domain.objects.get(name="shop.example")
    key = domain.keys.get()
    assert "refused until DKIM is verified" in page.inner_text("#domain-status")

    page.click("button[data-copy-target='record-value-1']")
    page.wait_for_selector(".pm-copy-status:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == key.text_value

    records = {
        (key.host, "TXT"): [key.text_value],
        ("pm-bounces.shop.example", "CNAME"): ["bounces.mail.example."],
        ("shop.example", "TXT"): ["v=spf1 a mx include:bounces.mail.example ~all"],
    }
    with DnsServer(records) as dns:
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{dns.port}"]
        page.click("#verify-now")
        page.wait_for_selector(".messagelist .success")
        assert "allowed (DKIM verified)" in page.inner_text("#domain-status")
        table = page.inner_text("#dns-records")
        assert table.count("verified") >= 3 and "not verified" not in table
        screenshot(page, "domain-page")
        screenshot(page, "domain-records", locator=page.locator("#dns-records"))

        page.click("#rotate-dkim")  # confirmed in the dialog
        page.wait_for_selector("text=A key rotation is pending")
        pending = domain.keys.get(state="pending")
        assert pending.host in page.inner_text("#dns-records")

    signature = create_sender("news@club.example")
    page.goto(f"/admin/domains/sendersignature/{signature.pk}/change/")
    page.click("#confirm-signature")
    page.wait_for_selector("#signature-status:has-text('allowed (confirmed)')")
    assert SenderSignature.objects.get(pk=signature.pk).confirmed
    assert errors == [], "\n".join(errors)


def test_template_editor_preview_and_push(browser_page, live_server, django_user_model, request):
    """Edit a template with its layout: the sandboxed frame shows the HTML rendered with the test
    model and loads nothing remote, the text is beside it, a syntax error is listed at its line
    (a click selects that line); then push the templates to another server after the diff."""
    import http.server
    import threading

    from mailtemplates import services
    from mailtemplates.models import Template
    from streams.services import create_server

    hits = []

    class Remote(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    remote = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Remote)
    threading.Thread(target=remote.serve_forever, daemon=True).start()
    request.addfinalizer(remote.server_close)
    request.addfinalizer(remote.shutdown)
    far = f"http://127.0.0.1:{remote.server_port}"

    page, errors = browser_page
    django_user_model.objects.create_superuser("operator", "op@example.com", "browser-pass-1")
    shop, staging = create_server("Shop"), create_server("Staging")
    services.create(shop, {"name": "Base", "alias": "base", "templatetype": "Layout",
                           "htmlbody": "<html><head><style>p { color: red }</style></head><body>"
                                       "{{{ @content }}}</body></html>",
                           "textbody": "-- {{{ @content }}} --"})  # fmt: skip
    welcome = services.create(shop, {"name": "Welcome", "alias": "welcome",
                                     "subject": "Hi {{ name }}", "layouttemplate": "base",
                                     "htmlbody": "<p>Hello {{ name }}</p>",
                                     "textbody": "Hello {{ name }}"})  # fmt: skip

    page.goto(f"/admin/login/?next=/admin/mailtemplates/template/{welcome.pk}/change/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "browser-pass-1")
    page.click("input[type=submit]")
    frame = page.frame_locator("#preview-html")
    frame.locator("p:has-text('Hello name_Value')").wait_for()
    assert page.get_attribute("#preview-html", "sandbox") == ""
    assert "-- Hello name_Value --" in page.inner_text("#preview-text")

    page.fill("#preview-model", '{"name": "Ada"}')
    page.fill(
        "#id_html_body",
        f'<p>Dear {{{{ name }}}}<img src="{far}/pixel.gif"></p>'
        f'<link rel="stylesheet" href="{far}/x.css"><script src="{far}/x.js"></script>'
        "<script>document.body.innerHTML = 'scripted'</script>",
    )
    frame.locator("p:has-text('Dear Ada')").wait_for()
    assert frame.locator("p").get_attribute("style") == "color: red;"  # the CSS inlined
    page.wait_for_selector("#preview-text:has-text('-- Hello Ada --')")
    assert page.inner_text("#preview-subject") == "Hi Ada"
    screenshot(page, "template-editor")

    page.fill("#id_text_body", "Hello\n{{#each items}}{{.}}")
    page.wait_for_selector("#preview-problems:not([hidden])")
    problem = page.locator(".pm-problem-where").first
    assert problem.inner_text() == "Text body, line 2, character 1"
    problem.click()
    selected = page.evaluate(
        "(() => { const a = document.activeElement;"
        " return [a.id, a.value.slice(a.selectionStart, a.selectionEnd)]; })()"
    )
    assert selected == ["id_text_body", "{{#each items}}{{.}}"]
    page.click("input[name=_continue]")
    page.wait_for_selector(".errornote")
    assert "Line 2, character 1:" in page.inner_text(".field-text_body .errorlist")
    assert Template.objects.get(pk=welcome.pk).text_body == "Hello {{ name }}"
    page.fill("#id_text_body", "Hello {{ name }}, again")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    assert Template.objects.get(pk=welcome.pk).text_body == "Hello {{ name }}, again"
    assert hits == [], hits  # nothing in the preview reached the remote server

    page.goto("/admin/mailtemplates/template/")
    page.click("#push-templates")
    page.select_option("#id_source", str(shop.pk))
    page.select_option("#id_destination", str(staging.pk))
    page.click("#push-dry-run")
    page.wait_for_selector("#push-plan")
    assert page.locator(".pm-push-change").count() == 2
    assert Template.objects.filter(server=staging).count() == 0
    screenshot(page, "template-push")
    page.click("#push-perform")  # confirmed in the dialog
    page.wait_for_selector(".messagelist .success")
    assert set(Template.objects.filter(server=staging).values_list("alias", flat=True)) == {
        "base",
        "welcome",
    }
    # What the frame's policy and sandbox refused is reported on the console, as it should be.
    refused = ("Content Security Policy", "Blocked script execution", "Refused to")
    assert [e for e in errors if not any(r in e for r in refused)] == [], "\n".join(errors)
