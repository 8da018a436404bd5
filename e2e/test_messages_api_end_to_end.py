"""The MessageID of an SMTP ``250 … queued as <MessageID>`` reply, looked up through the Messages
API by the real clients: a real gateway process, a real Celery worker relaying to a local SMTP
sink, the HTTP API on live_server, postmarker and postmark.js unmodified but for their base URL."""

import http.client
import re
from urllib.parse import urlsplit

import postmarker.core
import pytest

from conftest import send, subprocess_env, wait_for
from delivery.tests.sinks import SmtpSink
from messages.models import OutboundMessage, Recipient
from servers.models import DeliveryType, Server

pytestmark = pytest.mark.django_db(transaction=True)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
MESSAGE = (
    b"From: Shop <shop@example.com>\r\n"
    b"To: Reader <reader@example.net>, gone@example.net\r\n"
    b"Subject: Your order has shipped\r\n"
    b"X-PM-Tag: shipping\r\n"
    b"X-PM-Metadata-order: 1234\r\n"
    b"X-PM-TrackLinks: HtmlOnly\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b'<html><body><p>Track it <A HREF="https://carrier.example/t/1234">here</A>.</p>'
    b"</body></html>\r\n"
)


@pytest.fixture
def sink():
    with SmtpSink() as running:
        yield running


def test_an_smtp_message_found_by_postmarker_and_postmark_js(
    gateway, creds, live_server, sink, start_process, postmark_js
):
    Server.objects.filter(pk=creds.server.pk).update(delivery_type=DeliveryType.LIVE)
    worker = start_process(
        ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "--pool", "threads"],
        env=subprocess_env(
            CELERY_BROKER_URL="",
            OUTBOUND_SMTP_RELAY=f"smtp://127.0.0.1:{sink.port}?starttls=never",
            TRACKING_BASE_URL=live_server.url,
        ),
        name="worker",
    )
    worker.wait_for("ready", timeout=60)
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    message_id = send(client, MESSAGE, rcpts=["reader@example.net", "gone@example.net"])
    client.quit()
    wait_for(
        lambda: (
            Recipient.objects.filter(message__message_id=message_id)
            .exclude(status__in=("pending", "sending"))
            .count()
            == 2
        ),
        timeout=90,
        what="both recipients to be done",
    )
    # The reader follows the tracked link in the mail the sink received.
    delivered = sink.messages[0].content.decode()
    link = re.search(re.escape(live_server.url) + r"/c/[^\"]+", delivered).group(0)
    target = urlsplit(link)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
    connection.request("GET", target.path, headers={"User-Agent": CHROME})
    response = connection.getresponse()
    assert response.status == 302
    assert response.headers["Location"] == "https://carrier.example/t/1234"
    connection.close()

    pm = postmarker.core.PostmarkClient(
        server_token=creds.server_token, root_api_url=live_server.url + "/"
    )
    listed = pm.messages.outbound.all(count=10, tag="shipping")
    assert [m.MessageID for m in listed] == [message_id]
    assert listed[0].Status == "Sent"
    assert listed[0].Metadata == {"order": "1234"}
    details = pm.messages.outbound.get(message_id)
    assert details.Subject == "Your order has shipped"
    assert details.To == [
        {"Email": "reader@example.net", "Name": "Reader"},
        {"Email": "gone@example.net", "Name": ""},
    ]
    assert "carrier.example" in details.HtmlBody
    events = {(e["Type"], e["Recipient"]) for e in details.MessageEvents}
    assert events >= {
        ("Delivered", "reader@example.net"),
        ("Bounced", "gone@example.net"),
        ("LinkClicked", "reader@example.net"),
    }
    clicked = next(e for e in details.MessageEvents if e["Type"] == "LinkClicked")
    assert clicked["Details"]["Link"] == "https://carrier.example/t/1234"
    assert "Chrome" in clicked["Details"]["Summary"]

    js = postmark_js(
        live_server.url, "Server", creds.server_token, "getOutboundMessageDetails", message_id
    )
    assert js["ok"], js
    assert js["result"]["MessageID"] == message_id
    assert js["result"]["MessageEvents"] == details.MessageEvents
    clicks = postmark_js(
        live_server.url, "Server", creds.server_token, "getMessageClicks", {"count": 10}
    )
    assert clicks["ok"], clicks
    assert clicks["result"]["Clicks"][0]["Client"]["Family"] == "Chrome"
    assert OutboundMessage.objects.get(message_id=message_id).status == "sent"
