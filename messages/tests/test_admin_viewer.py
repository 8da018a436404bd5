"""The admin's message page (``messages.viewer``): recipients as names and addresses, the HTML
part served alone under a strict Content-Security-Policy for the sandboxed frame, the text part,
the header fields, the raw source (escaped), and who opened and clicked with what."""

import pytest

from conftest import accepted_submission
from messages.models import OutboundMessage
from messages.processing import process_submission
from messages.viewer import RAW_SHOWN, VIEWER_CSP, view
from tracking import events as tracking

RAW = (
    b'From: "Shop" <shop@example.com>\r\n'
    b'To: "Ada <b>Lovelace</b>" <ada@example.net>, bob@example.net\r\n'
    b"Cc: =?utf-8?q?Caf=C3=A9?= <cafe@example.net>\r\n"
    b"Subject: Receipt <script>x()</script>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello <i>text</i>\r\n"
    b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>Hello html</p><img src='https://tracker.example/p.gif'>\r\n"
    b"--b1--\r\n"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def stored(server, raw=RAW, rcpts=("ada@example.net", "bob@example.net", "cafe@example.net")):
    submission = accepted_submission(server, raw, rcpts)
    process_submission(submission.pk)
    return OutboundMessage.objects.get(message_id=submission.message_id)


@pytest.mark.django_db
def test_view_reads_names_parts_and_headers(server):
    message = stored(server)
    viewed = view(message, {"ada@example.net": "sandboxed"})
    assert [(p.name, p.email, p.status) for p in viewed.to] == [
        ("Ada <b>Lovelace</b>", "ada@example.net", "sandboxed"),
        ("", "bob@example.net", ""),
    ]
    assert [(p.name, p.email) for p in viewed.cc] == [("Café", "cafe@example.net")]
    assert viewed.text.strip() == "Hello <i>text</i>" and viewed.has_html
    headers = dict(viewed.headers)
    assert headers["Subject"] == "Receipt <script>x()</script>" and headers["Cc"].startswith("Caf")
    assert "Hello html" in viewed.raw and not viewed.raw_cut


@pytest.mark.django_db
def test_a_large_message_shows_its_head_and_a_text_only_one_says_so(server, admin_client):
    raw = b"From: shop@example.com\r\nTo: ada@example.net\r\nSubject: Big\r\n\r\n" + (
        b"x" * 998 + b"\r\n"
    ) * (RAW_SHOWN // 1000 + 10)
    message = stored(server, raw, ["ada@example.net"])
    viewed = view(message)
    assert viewed.raw_cut and len(viewed.raw) == RAW_SHOWN and not viewed.has_html
    page = admin_client.get(f"/admin/outbound/outboundmessage/{message.pk}/change/").text
    assert "This message has no HTML part." in page and "The first 256 KB" in page
    frame = admin_client.get(f"/admin/outbound/outboundmessage/{message.pk}/html/")
    assert "This message has no HTML part." in frame.text


@pytest.mark.django_db
def test_message_page_shows_people_parts_and_readers_escaped(server, admin_client):
    message = stored(server)
    tracking.record_open(message, "ada@example.net", CHROME)
    tracking.record_click(message, "ada@example.net", "https://shop.example/r/1", "HTML", CHROME)
    page = admin_client.get(f"/admin/outbound/outboundmessage/{message.pk}/change/")
    assert page.status_code == 200
    text = page.text
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in text and "<b>Lovelace" not in text
    assert "<code>ada@example.net</code>" in text and '["ada@example.net"' not in text
    assert "Receipt &lt;script&gt;x()&lt;/script&gt;" in text and "<script>x()" not in text
    assert "Hello &lt;i&gt;text&lt;/i&gt;" in text  # the text part and the raw source, as text
    assert f'src="/admin/outbound/outboundmessage/{message.pk}/html/"' in text
    assert 'sandbox=""' in text
    # Who opened and clicked, with what.
    assert "Chrome 120.0 on Windows 10; Desktop platform; first open" in text
    assert "HTML link https://shop.example/r/1" in text


@pytest.mark.django_db
def test_the_html_part_is_served_alone_under_a_policy_that_loads_nothing(server, admin_client):
    message = stored(server)
    frame = admin_client.get(f"/admin/outbound/outboundmessage/{message.pk}/html/")
    assert frame.status_code == 200 and frame["Content-Type"] == "text/html; charset=utf-8"
    assert frame["Content-Security-Policy"] == VIEWER_CSP
    assert "default-src 'none'" in VIEWER_CSP and VIEWER_CSP.startswith("sandbox;")
    assert frame["X-Frame-Options"] == "SAMEORIGIN"
    assert "<p>Hello html</p>" in frame.text
    assert (
        admin_client.post(f"/admin/outbound/outboundmessage/{message.pk}/html/").status_code == 405
    )
    assert admin_client.get("/admin/outbound/outboundmessage/999999/html/").status_code == 404


@pytest.mark.django_db
def test_staff_without_the_server_cannot_read_its_messages(server, client, django_user_model):
    from django.contrib.auth.models import Permission

    from servers.models import StaffServerAccess
    from streams.services import create_server

    message = stored(server)
    staff = django_user_model.objects.create_user("s", "s@example.com", "pass-123", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_outboundmessage"))
    StaffServerAccess.objects.create(user=staff).servers.add(create_server("Other"))
    client.force_login(staff)
    assert client.get(f"/admin/outbound/outboundmessage/{message.pk}/html/").status_code == 404
