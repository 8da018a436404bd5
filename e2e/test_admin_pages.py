"""Every admin page in a real browser at 1280×800 and 1920×1080: every changelist (with rows),
every change and add form, and the custom pages (dashboard, System, a domain, a server, a
message and its preview, suppressions, the template push). Each must answer without a server
error, fit its box (no horizontal scrolling of the page, no table wider than a box that does not
scroll it), and show the seeded names and subjects, which carry ``<b>`` and ``<script>``, as text.

One browser and one page for the whole walk; each page is loaded once and checked at both sizes.
With ``SCREENSHOTS=1`` a few key pages are saved into docs/screenshots/ (``make test`` leaves the
committed ones alone)."""

import http.server
import os
import re
import threading
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from conftest import ROOT, accepted_submission

pytestmark = [
    pytest.mark.once_postgres,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

SIZES = ((1280, 800), (1920, 1080))
# Rendered as text, these show; rendered as HTML, the <b> is an element and the script runs.
HOSTILE = "<b class=pm-xss>bold</b><script>window.pmXss = 1</script>"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
# Django's own formats ("Dec. 7, 2026, 2:03 p.m."), which the admin's one format replaces.
OTHER_TIME_FORMAT = re.compile(
    r"\b(Jan|Feb|March|April|May|June|July|Aug|Sept|Oct|Nov|Dec)\.? \d{1,2}, \d{4}|\b[ap]\.m\."
)
# The pages whose screenshots are kept in docs/screenshots (at 1280×800).
KEY_PAGES = {
    "/admin/dashboard/": "dashboard",
    "/admin/system/": "system",
    "server": "server-page",
    "message": "message-page",
    "domain": "domain-page",
    "/admin/bounces/bounce/": "bounces",
    "/admin/webhooks/webhookdelivery/": "webhook-deliveries",
    "stream": "stream-page",
}

# Measured in the page: the page's own horizontal scrolling, and every table wider than a box it
# sits in, hidden or scrolled sideways (Django's changelist box scrolls: its last columns were out
# of sight), but in a box made to scroll (``pm-scroll``, e.g. a raw source).
OVERFLOW_JS = """() => {
  const problems = [];
  const page = document.scrollingElement;
  if (page.scrollWidth > window.innerWidth) {
    problems.push(`the page scrolls sideways: ${page.scrollWidth}px in ${window.innerWidth}px`);
  }
  for (const table of document.querySelectorAll("table")) {
    if (!table.offsetParent) continue;
    const right = table.getBoundingClientRect().right;
    for (let box = table.parentElement; box && box !== document.body; box = box.parentElement) {
      if (box.classList.contains("pm-scroll")) break;
      const edge = box.getBoundingClientRect().left + box.clientLeft + box.clientWidth;
      if (box.clientWidth && right > edge + 1) {
        const cells = [...table.querySelectorAll("td, th")];
        const widest = cells.reduce((a, b) => (b.offsetWidth > a.offsetWidth ? b : a));
        const cell = `${widest.offsetWidth}px: ${widest.className} ` +
          `"${widest.textContent.trim().slice(0, 40)}"`;
        const name = table.id || table.className || "table";
        const where = box.id || box.className || box.tagName;
        problems.push(`${name} (widest cell ${cell}) ends at ${Math.round(right)}px, ` +
          `past ${where} at ${Math.round(edge)}px`);
        break;
      }
    }
  }
  return problems;
}"""


def seed_everything(far: str = "https://tracker.example", hostile: str = HOSTILE):
    """One or more rows for every admin model, names and subjects carrying ``hostile``; returns
    the objects whose pages the walk opens besides the changelists."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from bounces.services import record_bounce
    from delivery.relay import deliver_message
    from domains.models import Domain
    from domains.services import create_domain, create_sender
    from inbound.models import InboundRule
    from inbound.tests.helpers import inbound_address, inbound_submission
    from mailtemplates import services as templates
    from messages.models import OutboundMessage
    from messages.processing import process_submission
    from postmark_site.tests.system_seed import seed_waiting_work
    from privacy.services import request_removal
    from servers.models import AccountToken, StaffServerAccess
    from streams.models import IpCredential, Suppression
    from streams.services import create_server, create_smtp_token, get_stream
    from streams.suppressions import suppress
    from tracking import events as tracking
    from webhooks.models import Webhook

    server = create_server(f"Shop {hostile}".strip())
    stream = get_stream(server, "outbound")
    create_smtp_token(stream)
    seed_waiting_work(server)
    IpCredential.objects.create(stream=stream, cidr="192.0.2.0/24", description=hostile or "Office")
    account_token = AccountToken(name=f"CI {hostile}")
    account_token.set_token("account-token-0123456789")
    account_token.save()
    group = Group.objects.create(name=f"Support {hostile}")
    user = get_user_model().objects.create_user("support", "s@example.com", "x", is_staff=True)
    user.groups.add(group)
    StaffServerAccess.objects.create(user=user).servers.add(server)
    Webhook.objects.create(stream=stream, url="https://hooks.example.org/pm?" + "x" * 120,
                           delivery_enabled=True, open_enabled=True)  # fmt: skip

    raw = (
        f'From: "Shop {hostile}" <app@example.com>\r\n'
        f'To: "Ada {hostile}" <ada@example.net>, bob@example.net\r\n'
        f"Cc: Carol <carol@example.net>\r\n"
        f"Subject: Receipt {hostile}\r\n"
        f"X-PM-Tag: receipts\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello Ada, your receipt {hostile}\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"<html><body><h1>Receipt</h1><p>Hello Ada</p><a href='https://shop.example/r/1'>"
        f"Your receipt</a><img src='{far}/p.gif'><link rel=stylesheet href='{far}/x.css'>"
        "</body></html>\r\n"
        "--b1--\r\n"
    ).encode()
    rcpts = ["ada@example.net", "bob@example.net", "carol@example.net"]
    submission = accepted_submission(server, raw, rcpts)
    process_submission(submission.pk)
    message = OutboundMessage.objects.get(message_id=submission.message_id)
    deliver_message(message.pk)  # a Sandbox server: recorded, not sent
    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36"
    )
    tracking.record_open(message, "ada@example.net", chrome)
    tracking.record_click(message, "ada@example.net", "https://shop.example/r/1", "HTML", chrome)

    for n, kind in enumerate(("HardBounce", "SoftBounce", "Transient")):
        record_bounce(
            server=server, stream=stream, message_stream="outbound", type=kind,
            email=f"user{n}-with-a-rather-long-address@subdomain.example.net",
            subject=f"Order {hostile}", tag="orders", message_id=uuid.uuid4(),
            details=f"550 5.1.1 <user{n}@example.net>: Recipient address rejected: {hostile} "
            + "User unknown in virtual mailbox table; " * 6,
            content="Reporting-MTA: dns; mx.example.net\r\n", inactive=kind == "HardBounce",
            can_activate=kind == "HardBounce",
        )  # fmt: skip
    suppress(stream, "gone@example.net", Suppression.Reason.MANUAL, Suppression.Origin.ADMIN)

    domain = create_domain("shop.example")
    Domain.objects.filter(pk=domain.pk).update(dns_problem=f"SERVFAIL {hostile}",
                                               dns_problem_since=timezone.now())  # fmt: skip
    create_sender("news@club.example", name=f"Club {hostile}")
    templates.create(server, {"name": f"Welcome {hostile}", "alias": "welcome",
                              "subject": f"Hi {hostile}", "htmlbody": "<p>Hi {{ name }}</p>",
                              "textbody": "Hi {{ name }}"})  # fmt: skip
    request_removal("erase-me@example.net")
    inbound_raw = (
        f'From: "Jane {hostile}" <jane@customer.example>\r\n'
        f"To: Support <{inbound_address(server, 'ticket-42')}>\r\n"
        f"Subject: Re: ticket {hostile}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        f"<p>Thanks {hostile}</p>\r\n"
    ).encode()
    process_submission(inbound_submission(server, inbound_raw).pk)
    InboundRule.objects.create(server=server, rule="blocked.example")
    live = create_server("Live shop", delivery_type="Live")
    return {"server": server, "stream": stream, "message": message, "domain": domain,
            "live": live, "old": timezone.now() - timedelta(days=1)}  # fmt: skip


def admin_pages(objects, user) -> dict[str, str]:
    """Every admin page to visit: key → path (add forms of the models one may add)."""
    from django.contrib import admin
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user

    pages = {"/admin/dashboard/": "/admin/dashboard/", "/admin/system/": "/admin/system/",
             "/admin/": "/admin/"}  # fmt: skip
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        base = f"admin:{opts.app_label}_{opts.model_name}"
        changelist = reverse(f"{base}_changelist")
        pages[changelist] = changelist
        first = model.objects.order_by("pk").first()
        assert first is not None, f"no {opts.label} seeded: its change form is not visited"
        pages[f"{opts.label} change"] = reverse(f"{base}_change", args=[first.pk])
        if model_admin.has_add_permission(request):
            pages[f"{opts.label} add"] = reverse(f"{base}_add")
    message, stream = objects["message"], objects["stream"]
    pages["server"] = reverse("admin:servers_server_change", args=[objects["server"].pk])
    pages["live server"] = reverse("admin:servers_server_change", args=[objects["live"].pk])
    pages["message"] = reverse("admin:outbound_outboundmessage_change", args=[message.pk])
    pages["domain"] = reverse("admin:domains_domain_change", args=[objects["domain"].pk])
    pages["stream"] = reverse("admin:streams_messagestream_change", args=[stream.pk])
    pages["suppressions"] = reverse("admin:streams_messagestream_suppressions", args=[stream.pk])
    pages["token for a stream"] = reverse("admin:streams_smtptoken_add") + f"?stream={stream.pk}"
    pages["bounces of a type"] = "/admin/bounces/bounce/?type__exact=HardBounce"
    pages["templates push"] = reverse("admin:mailtemplates_template_push")
    pages["message html"] = reverse("admin:outbound_outboundmessage_html", args=[message.pk])
    return pages


def test_every_admin_page_fits_and_escapes(browser_page, live_server, django_user_model, request):
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

    page, errors = browser_page
    operator = django_user_model.objects.create_superuser(
        "operator", "op@example.com", "browser-pass-1"
    )
    keep = os.environ.get("SCREENSHOTS") == "1"
    # The screenshots show plain names; every other run seeds the hostile ones.
    objects = seed_everything(f"http://127.0.0.1:{remote.server_port}", "" if keep else HOSTILE)
    if keep:  # a month of traffic for the dashboard's picture
        from e2e.test_admin_browser import seed_history

        seed_history("Demo shop")
    pages = admin_pages(objects, operator)

    page.goto("/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "browser-pass-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/dashboard/")  # no next: the dashboard, not the model index

    problems = []
    for key, path in pages.items():
        page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
        response = page.goto(path)
        if response is None or response.status >= 400:
            problems.append(f"{path}: HTTP {response.status if response else 'no answer'}")
            continue
        if page.locator("b.pm-xss").count() or page.evaluate("window.pmXss === 1"):
            problems.append(f"{path}: a seeded name or subject was rendered as HTML")
        other_format = OTHER_TIME_FORMAT.search(page.inner_text("body"))
        if other_format:
            problems.append(f"{path}: a time not in the admin's format: {other_format.group()!r}")
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            problems += [f"{path} at {width}×{height}: {p}" for p in page.evaluate(OVERFLOW_JS)]
        if keep and key in KEY_PAGES:
            page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(DOCS_SCREENSHOTS / f"{KEY_PAGES[key]}.png"))
            if key == "server":
                page.click("#smtp-configuration summary")
                config = page.locator("#smtp-configuration")
                config.screenshot(path=str(DOCS_SCREENSHOTS / "smtp-configuration.png"))
    assert problems == [], "\n".join(problems)

    # The message page's viewer: the HTML in its sandboxed frame, the other parts a tab away.
    page.goto(pages["message"])
    frame = page.frame_locator("#message-html")
    frame.locator("h1:has-text('Receipt')").wait_for()
    assert page.get_attribute("#message-html", "sandbox") == ""
    assert page.is_hidden("#message-headers")
    page.click("button[data-tab='viewer-headers']")
    assert "Subject" in page.inner_text("#message-headers")
    page.click("button[data-tab='viewer-text']")
    assert "Hello Ada, your receipt" in page.inner_text("#message-text")
    if not keep:
        assert "<b class=pm-xss>" in page.inner_text("#message-text")
    page.click("button[data-tab='viewer-raw']")
    assert "Content-Type: multipart/alternative" in page.inner_text("#message-raw")
    timeline = page.inner_text("#timeline")
    assert "Chrome 120.0 on Windows 10; Desktop platform" in timeline
    assert "HTML link https://shop.example/r/1" in timeline
    assert hits == [], hits  # the message's remote image and stylesheet were never loaded
    refused = ("Content Security Policy", "Blocked script execution", "Refused to")
    assert [e for e in errors if not any(r in e for r in refused)] == [], "\n".join(errors)
