"""Open and click tracking: rewriting the message per recipient, and the public endpoints."""

import base64
import email
import email.policy
import quopri
import re
import urllib.error
import urllib.request
import uuid
import zlib

import pytest
from django.core import signing
from django.utils import timezone

from core import crypto
from core.mime import split_message
from messages.models import MessageEvent, OutboundMessage
from streams.services import get_stream
from tracking.agents import classify_user_agent
from tracking.rewrite import apply_tracking
from tracking.tokens import (
    CLICK_SALT,
    OPEN_SALT,
    ClickToken,
    OpenToken,
    click_token,
    click_url,
    open_token,
    open_url,
    read_click_token,
    read_open_token,
)

RCPT = "reader@example.net"
BASE = "http://track.test"

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)


@pytest.fixture(autouse=True)
def tracking_base(settings):
    settings.TRACKING_BASE_URL = BASE + "/"  # a trailing slash is tolerated


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def unsaved(content: bytes, opens=True, links="None") -> OutboundMessage:
    return OutboundMessage(
        message_id=uuid.uuid4(), content=content, track_opens=opens, track_links=links
    )


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def part_text(raw: bytes, content_type: str) -> str:
    parts = [
        p
        for p in parsed(raw).walk()
        if p.get_content_type() == content_type and not p.is_attachment()
    ]
    assert len(parts) == 1, parts
    return parts[0].get_content()


def click_tokens(text: str) -> list[ClickToken]:
    tokens = re.findall(re.escape(BASE) + r"/c/([^\s\"'<>()]+)", text)
    return [read_click_token(t) for t in tokens]


def open_tokens(text: str) -> list[OpenToken]:
    return [read_open_token(t) for t in re.findall(re.escape(BASE) + r"/o/([^\"]+)", text)]


SINGLE_HTML = crlf(
    "From: Sender <sender@example.com>\n"
    "To: reader@example.net\n"
    "Subject: Hello\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/html; charset=utf-8\n"
    "Content-Transfer-Encoding: 7bit\n"
    "\n"
    '<html><body><p>Hi <a href="https://example.com/welcome?a=1&amp;b=2">there</a></p>'
    "</body></html>\n"
)


# --- rewriting the message ------------------------------------------------------------------------


def test_pixel_before_body_end_of_a_single_part_html_message():
    message = unsaved(SINGLE_HTML)
    out = apply_tracking(message, RCPT)

    assert split_message(out)[0] == split_message(SINGLE_HTML)[0]  # headers byte-identical
    html = part_text(out, "text/html")
    pixel = re.search(r'<img src="([^"]+)" width="1" height="1" alt="" style="[^"]+">', html)
    assert pixel and html.index(pixel.group(0)) < html.index("</body>")
    assert html.rstrip().endswith("</body></html>")
    assert pixel.group(1).startswith(BASE + "/o/")
    assert open_tokens(html) == [OpenToken(message.message_id, RCPT)]
    assert b"\n" not in out.replace(b"\r\n", b"")  # line endings stay CRLF
    assert 'href="https://example.com/welcome?a=1&amp;b=2"' in html  # links off: untouched


def test_pixel_appended_when_there_is_no_body_end():
    raw = crlf("Content-Type: text/html\n\n<p>Just a fragment</p>\n")
    out = apply_tracking(unsaved(raw), RCPT)
    body = split_message(out)[2].decode()
    assert body.startswith("<p>Just a fragment</p>\r\n")
    assert body.rstrip().endswith('">') and "/o/" in body


def alternative_qp() -> bytes:
    html = (
        "<html><head><meta charset=utf-8></head><body>"
        "<h1>Grüße aus Köln — ünïcödé ✓</h1>"
        + "<p>"
        + "Lorem ipsum dolor sit amet, " * 6
        + "</p>"
        + '<p><a class="btn" href="https://example.com/ä?x=1">Öffnen</a> '
        '<a href="mailto:help@example.com">mail</a> <a href="#top">top</a></p>'
        "</body></html>"
    )
    text = "Grüße aus Köln\nOpen https://example.com/plain?x=1.\nBye\n"
    return crlf(
        "From: sender@example.com\n"
        "To: reader@example.net\n"
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/alternative; boundary="=_alt_01"\n'
        "\n"
        "This is a multi-part message in MIME format.\n"
        "--=_alt_01\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        f"{quopri.encodestring(text.encode()).decode()}"
        "--=_alt_01\n"
        "Content-Type: text/html; charset=utf-8\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        f"{quopri.encodestring(html.encode()).decode()}\n"
        "--=_alt_01--\n"
        "epilogue\n"
    )


def test_multipart_alternative_with_quoted_printable_utf8_html():
    raw = alternative_qp()
    message = unsaved(raw, opens=True, links="None")
    out = apply_tracking(message, RCPT)

    html = part_text(out, "text/html")
    assert "Grüße aus Köln — ünïcödé ✓" in html
    assert "Lorem ipsum dolor sit amet, " * 6 in html
    assert open_tokens(html) == [OpenToken(message.message_id, RCPT)]
    assert html.index(f"{BASE}/o/") < html.index("</body>")
    # Still quoted-printable and utf-8, with lines of at most 76 characters.
    html_part = next(p for p in parsed(out).walk() if p.get_content_type() == "text/html")
    assert html_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert html_part.get_content_charset() == "utf-8"
    encoded_body = out.split(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")[2]
    assert all(len(line) <= 76 for line in encoded_body.split(b"\r\n"))
    # Everything but the HTML part's body is byte-identical.
    text_section = raw[: raw.index(b"--=_alt_01\r\nContent-Type: text/html")]
    assert out.startswith(text_section)
    assert out.endswith(b"\r\n--=_alt_01--\r\nepilogue\r\n")
    assert b"\n" not in out.replace(b"\r\n", b"")


def test_base64_html_part():
    html = "<html><body><p>Żółć — 日本語</p></body></html>"
    encoded = base64.encodebytes(html.encode("utf-8")).decode()
    raw = crlf(
        "Subject: b64\n"
        'Content-Type: text/html; charset="UTF-8"\n'
        "Content-Transfer-Encoding: base64\n"
        "\n"
        f"{encoded}"
    )
    message = unsaved(raw)
    out = apply_tracking(message, RCPT)

    header_block, _, body = split_message(out)
    assert header_block == split_message(raw)[0]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    decoded = base64.b64decode(body).decode("utf-8")
    assert decoded.startswith("<html><body><p>Żółć — 日本語</p><img src=")
    assert decoded.endswith("</body></html>")
    assert open_tokens(decoded) == [OpenToken(message.message_id, RCPT)]


def test_8bit_iso_8859_2_html_keeps_its_charset():
    html = "<html><body><p>Příliš žluťoučký kůň</p><a href='http://example.cz/kůň'>x</a></body>"
    raw = (
        b"Content-Type: text/html; charset=iso-8859-2\n"
        b"Content-Transfer-Encoding: 8bit\n\n" + html.encode("iso-8859-2") + b"\n"
    )
    message = unsaved(raw, opens=True, links="HtmlOnly")
    out = apply_tracking(message, RCPT)
    body = split_message(out)[2]
    assert "Příliš žluťoučký kůň".encode("iso-8859-2") in body
    text = body.decode("iso-8859-2")
    assert "<a href='" + BASE + "/c/" in text  # the quote style is kept
    assert [(t.url, t.location) for t in click_tokens(text)] == [("http://example.cz/kůň", "HTML")]
    assert open_tokens(text)[0].recipient == RCPT


LINKS_HTML = (
    "<html><body>"
    '<a href="https://example.com/a?x=1&amp;y=2">A</a>'
    "<A HREF='http://example.com/b'>B</A>"
    '<a title="x>y" href=https://example.com/c>C</a>'
    '<a href="mailto:someone@example.com">mail</a>'
    '<a href="#section">anchor</a>'
    '<a href="ftp://example.com/file">ftp</a>'
    '<a name="x">no href</a>'
    '<img src="https://example.com/logo.png">'
    "</body></html>"
)
LINKS_TEXT = "See https://example.com/t1 and (https://example.com/t2).\nMail me: mailto:x@y.z\n"


def links_message() -> bytes:
    return crlf(
        "From: sender@example.com\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/alternative; boundary=b1\n"
        "\n"
        "--b1\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        f"{LINKS_TEXT}"
        "--b1\n"
        "Content-Type: text/html; charset=us-ascii\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        f"{LINKS_HTML}\n"
        "--b1--\n"
    )


HTML_URLS = ["https://example.com/a?x=1&y=2", "http://example.com/b", "https://example.com/c"]
TEXT_URLS = ["https://example.com/t1", "https://example.com/t2"]


@pytest.mark.parametrize(
    "mode, html_rewritten, text_rewritten",
    [
        ("HtmlAndText", True, True),
        ("HtmlOnly", True, False),
        ("TextOnly", False, True),
        ("None", False, False),
    ],
)
def test_link_rewriting_per_mode(mode, html_rewritten, text_rewritten):
    raw = links_message()
    message = unsaved(raw, opens=False, links=mode)
    out = apply_tracking(message, RCPT)
    if mode == "None":
        assert out == raw
        return
    html = part_text(out, "text/html")
    text = part_text(out, "text/plain")

    if html_rewritten:
        tokens = click_tokens(html)
        assert [t.url for t in tokens] == HTML_URLS
        assert {(t.message_id, t.recipient, t.location) for t in tokens} == {
            (message.message_id, RCPT, "HTML")
        }
        for kept in ('href="mailto:', 'href="#section"', 'href="ftp://', 'src="https://example'):
            assert kept in html
        assert 'title="x>y"' in html and "<A HREF='" + BASE in html
    else:
        assert html == LINKS_HTML
    if text_rewritten:
        tokens = click_tokens(text)
        assert [t.url for t in tokens] == TEXT_URLS
        assert {t.location for t in tokens} == {"Text"}
        assert re.search(r"and \(" + re.escape(BASE) + r"/c/\S+\)\.\r?\n", text)  # ")." kept
        assert "mailto:x@y.z" in text
    else:
        assert text == LINKS_TEXT.rstrip("\n").replace("\n", "\r\n")
    assert b"/o/" not in out  # opens are off


def test_text_only_single_part_message():
    raw = b"Subject: plain\n\nVisit https://example.com/x today\n"
    out = apply_tracking(unsaved(raw, opens=True, links="TextOnly"), RCPT)
    header_block, separator, body = split_message(out)
    assert header_block + separator == b"Subject: plain\n\n"
    assert body.startswith(b"Visit " + BASE.encode() + b"/c/") and body.endswith(b" today\n")
    assert b"/o/" not in out  # no HTML part: nowhere to put a pixel


PDF = bytes(range(256)) * 20
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 3


def mixed_related_message() -> tuple[bytes, list[bytes]]:
    pdf_part = crlf(
        "Content-Type: application/pdf; name=report.pdf\n"
        'Content-Disposition: attachment; filename="report.pdf"\n'
        "Content-Transfer-Encoding: base64\n"
        "\n"
    ) + base64.encodebytes(PDF).replace(b"\n", b"\r\n")
    png_part = crlf(
        "Content-Type: image/png\n"
        "Content-ID: <logo@example.com>\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
    ) + base64.encodebytes(PNG).replace(b"\n", b"\r\n")
    text_attachment = crlf(
        "Content-Type: text/plain; charset=utf-8; name=links.txt\n"
        "Content-Disposition: attachment; filename=links.txt\n"
        "\n"
        "An attached file with https://example.com/attached in it.\n"
    )
    html_attachment = crlf(
        "Content-Type: text/html; name=page.html\n"
        "Content-Disposition: attachment; filename=page.html\n"
        "\n"
        '<html><body><a href="https://example.com/in-attachment">x</a></body></html>\n'
    )
    raw = (
        crlf(
            "From: sender@example.com\n"
            "MIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="mixed"\n'
            "\n"
            "--mixed\n"
            'Content-Type: multipart/alternative; boundary="alt"\n'
            "\n"
            "--alt\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: 8bit\n"
            "\n"
            "Héllo https://example.com/text\n"
            "--alt\n"
            'Content-Type: multipart/related; boundary="rel"; type="text/html"\n'
            "\n"
            "--rel\n"
            "Content-Type: text/html; charset=utf-8\n"
            "Content-Transfer-Encoding: quoted-printable\n"
            "\n"
        )
        + quopri.encodestring(
            '<html><body><img src="cid:logo@example.com"><p>Héllo '
            '<a href="https://example.com/html">go</a></p></body></html>'.encode()
        ).replace(b"\n", b"\r\n")
        + crlf("\n--rel\n")
        + png_part
        + crlf("--rel--\n\n--alt--\n\n--mixed\n")
        + pdf_part
        + crlf("--mixed\n")
        + text_attachment
        + crlf("--mixed\n")
        + html_attachment
        + crlf("--mixed--\n")
    )
    return raw, [pdf_part, png_part, text_attachment, html_attachment]


def test_nested_multiparts_and_attachments_untouched_byte_for_byte():
    raw, untouched = mixed_related_message()
    message = unsaved(raw, opens=True, links="HtmlAndText")
    out = apply_tracking(message, RCPT)

    for part in untouched:
        assert part in out
    assert split_message(out)[0] == split_message(raw)[0]
    html = part_text(out, "text/html")
    assert [t.url for t in click_tokens(html)] == ["https://example.com/html"]
    assert 'src="cid:logo@example.com"' in html and "Héllo" in html
    assert open_tokens(html) == [OpenToken(message.message_id, RCPT)]
    text_part = next(p for p in parsed(out).walk() if p.get_content_type() == "text/plain")
    assert text_part.get_content().startswith(f"Héllo {BASE}/c/")
    assert [t.url for t in click_tokens(text_part.get_content())] == ["https://example.com/text"]
    attachments = {p.get_filename(): p.get_content() for p in parsed(out).iter_attachments()}
    assert attachments["report.pdf"] == PDF


@pytest.mark.parametrize(
    "raw",
    [SINGLE_HTML, alternative_qp(), links_message(), mixed_related_message()[0], b"", b"junk"],
)
def test_no_tracking_is_byte_identical(raw):
    assert apply_tracking(unsaved(raw, opens=False, links="None"), RCPT) == raw
    # Without a recipient (the call shape before per-recipient delivery) nothing is tracked.
    assert apply_tracking(unsaved(raw, opens=True, links="HtmlAndText")) == raw


@pytest.mark.parametrize(
    "raw",
    [
        # Bad base64 (impossible length).
        b"Content-Type: text/html\nContent-Transfer-Encoding: base64\n\nPGh0bWw+P\n",
        # A charset Python does not know.
        b"Content-Type: text/html; charset=x-klingon\n\n<html><body>x</body></html>\n",
        # An unknown transfer encoding.
        b"Content-Type: text/html\nContent-Transfer-Encoding: x-uuencode\n\n<body></body>\n",
        # A multipart without a boundary parameter.
        b"Content-Type: multipart/mixed\n\n--x\nContent-Type: text/html\n\n<body></body>\n--x--\n",
        # Headers only.
        b"Content-Type: text/html\n",
    ],
)
def test_parts_that_cannot_be_decoded_are_left_as_they_are(raw):
    assert apply_tracking(unsaved(raw, opens=True, links="HtmlAndText"), RCPT) == raw


def test_undeclared_8bit_bytes_survive():
    raw = b"Content-Type: text/html\n\n<body>\xe9t\xe9 \xff https://x.example/</body>\n"
    out = apply_tracking(unsaved(raw, opens=True), RCPT)
    assert out.startswith(b"Content-Type: text/html\n\n<body>\xe9t\xe9 \xff https://x.example/\n")


def test_user_agent_classification():
    gmail = classify_user_agent(GMAIL_PROXY)
    assert gmail["Platform"] == "WebMail" and gmail["Client"]["Family"] == "Gmail"
    iphone = classify_user_agent(IPHONE_MAIL)
    assert iphone["Platform"] == "Mobile" and iphone["Client"]["Family"] == "Apple Mail"
    assert iphone["OS"]["Family"] == "iOS"
    chrome = classify_user_agent(CHROME)
    assert chrome["Platform"] == "Desktop" and chrome["Client"]["Family"] == "Chrome"
    assert chrome["OS"] == {"Name": "Windows 10", "Company": "Microsoft Corporation",
                            "Family": "Windows"}  # fmt: skip
    outlook = classify_user_agent("Microsoft Office/16.0 (Microsoft Outlook 16.0.1)")
    assert outlook["Client"]["Family"] == "Outlook" and outlook["Platform"] == "Desktop"
    assert classify_user_agent("")["Platform"] == "Unknown"


# --- the endpoints --------------------------------------------------------------------------------


def stored(server, raw: bytes = SINGLE_HTML, links="HtmlAndText") -> OutboundMessage:
    return OutboundMessage.objects.create(
        message_id=uuid.uuid4(),
        server=server,
        stream=get_stream(server, "outbound"),
        content=raw,
        recipients=[RCPT],
        track_opens=True,
        track_links=links,
        received_at=timezone.now(),
    )


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def http_get(url: str, user_agent: str = CHROME):
    """(status, headers, body) over real HTTP, redirects not followed."""
    opener = urllib.request.build_opener(NoRedirect)
    assert url.startswith("http://")
    request = urllib.request.Request(url, headers={"User-Agent": user_agent})  # noqa: S310
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def tracking_urls_in(out: bytes, kind: str) -> list[str]:
    text = "\n".join(
        p.get_content() for p in parsed(out).walk() if p.get_content_maintype() == "text"
    )
    return re.findall(re.escape(BASE) + "/" + kind + r"/[^\s\"'<>]+", text)


def on(live_server, url: str) -> str:
    assert url.startswith(BASE)
    return live_server.url + url[len(BASE) :]


@pytest.mark.urls("tracking.tests.tracking_urls")
def test_open_pixel_over_http(live_server, server):
    message = stored(server)
    out = apply_tracking(message, RCPT)
    [pixel_url] = tracking_urls_in(out, "o")

    status, headers, body = http_get(on(live_server, pixel_url), GMAIL_PROXY)
    assert status == 200
    assert headers["Content-Type"] == "image/gif"
    assert headers["Cache-Control"] == "no-store, no-cache, must-revalidate, private"
    assert body.startswith(b"GIF89a") and len(body) < 100

    first = MessageEvent.objects.get(type=MessageEvent.Type.OPEN)
    assert (first.outbound, first.message_id, first.recipient) == (
        message,
        message.message_id,
        RCPT,
    )
    assert (first.server_id, first.stream_id) == (server.pk, message.stream_id)
    assert first.data["FirstOpen"] is True
    assert first.data["UserAgent"] == GMAIL_PROXY
    assert first.data["Platform"] == "WebMail"
    assert first.data["Client"] == {"Name": "Gmail", "Company": "Google", "Family": "Gmail"}
    assert set(first.data["OS"]) == {"Name", "Company", "Family"}
    assert first.data["Geo"] and set(first.data["Geo"].values()) == {""}
    assert first.data["ReadSeconds"] == 0

    status, _, _ = http_get(on(live_server, pixel_url + ".gif"), IPHONE_MAIL)
    assert status == 200
    second = MessageEvent.objects.filter(type=MessageEvent.Type.OPEN).latest("id")
    assert second.pk != first.pk
    assert second.data["FirstOpen"] is False and second.data["Platform"] == "Mobile"

    # Another recipient's first open is a first open.
    other = open_url(message.message_id, "second@example.net")
    http_get(on(live_server, other))
    third = MessageEvent.objects.filter(type=MessageEvent.Type.OPEN).latest("id")
    assert (third.recipient, third.data["FirstOpen"]) == ("second@example.net", True)


@pytest.mark.urls("tracking.tests.tracking_urls")
def test_click_over_http_redirects_and_records(live_server, server):
    message = stored(server, links_message())
    out = apply_tracking(message, RCPT)
    html_urls = tracking_urls_in(out, "c")
    assert len(html_urls) == len(TEXT_URLS) + len(HTML_URLS)

    status, headers, _ = http_get(on(live_server, html_urls[-3]))  # the first HTML link
    assert status == 302
    assert headers["Location"] == "https://example.com/a?x=1&y=2"
    click = MessageEvent.objects.get(type=MessageEvent.Type.CLICK)
    assert (click.outbound, click.recipient) == (message, RCPT)
    assert click.data["OriginalLink"] == "https://example.com/a?x=1&y=2"
    assert click.data["ClickLocation"] == "HTML"
    assert click.data["UserAgent"] == CHROME
    assert click.data["Platform"] == "Desktop"
    assert click.data["Client"]["Family"] == "Chrome"
    assert click.data["OS"]["Family"] == "Windows"
    assert set(click.data["Geo"].values()) == {""}
    assert "FirstOpen" not in click.data

    status, headers, _ = http_get(on(live_server, html_urls[0]))  # the first text link
    assert (status, headers["Location"]) == (302, "https://example.com/t1")
    text_click = MessageEvent.objects.filter(type=MessageEvent.Type.CLICK).latest("id")
    assert text_click.data["ClickLocation"] == "Text"
    assert text_click.data["OriginalLink"] == "https://example.com/t1"


@pytest.mark.urls("tracking.tests.tracking_urls")
def test_click_with_the_django_test_client(client, server):
    message = stored(server)
    url = click_url(message.message_id, RCPT, "https://example.com/x", "Text")
    response = client.get(url[len(BASE) :], HTTP_USER_AGENT=IPHONE_MAIL)
    assert response.status_code == 302 and response["Location"] == "https://example.com/x"
    event = MessageEvent.objects.get()
    assert (event.type, event.data["ClickLocation"], event.data["Platform"]) == (
        "Click",
        "Text",
        "Mobile",
    )
    assert client.head(url[len(BASE) :]).status_code == 302
    assert client.post(url[len(BASE) :]).status_code == 405
    assert MessageEvent.objects.count() == 1  # HEAD and POST record nothing


def legacy_click_token(message_id, recipient: str, url: str) -> str:
    """A click token of the earlier, signed form (readable payload), as mail already sent has."""
    payload = [message_id.hex, recipient, url, "H"]
    return signing.Signer(salt=CLICK_SALT, sep="~").sign_object(payload, compress=True)


def legacy_open_token(message_id, recipient: str) -> str:
    return signing.Signer(salt=OPEN_SALT, sep="~").sign_object(
        [message_id.hex, recipient], compress=True
    )


def flip(token: str, index: int) -> str:
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]


def legacy_forgeries(message_id) -> list[tuple[str, str]]:
    good_click = legacy_click_token(message_id, RCPT, "https://example.com/ok")
    good_open = legacy_open_token(message_id, RCPT)
    payload, signature = good_click.split("~")
    compressed = payload.startswith(".")
    data = signing.b64_decode(payload.lstrip(".").encode())
    data = zlib.decompress(data) if compressed else data
    swapped = data.replace(b"https://example.com/ok", b"https://evil.example/")
    if compressed:
        swapped_payload = "." + signing.b64_encode(zlib.compress(swapped)).decode()
    else:
        swapped_payload = signing.b64_encode(swapped).decode()
    assert swapped_payload != payload
    swapped_token = swapped_payload + "~" + signature
    other_key = signing.Signer(key="another-key", salt=CLICK_SALT, sep="~")
    other_salt = signing.Signer(salt="another-salt", sep="~")
    other_open_key = signing.Signer(key="another-key", salt=OPEN_SALT, sep="~")
    evil = [message_id.hex, RCPT, "https://evil.example/", "H"]
    return [
        ("c", flip(good_click, len(good_click) - 5)),  # one character of the signature
        ("c", flip(good_click, 10)),  # one character of the payload
        ("c", good_click[:-1]),  # truncated
        ("c", payload),  # no signature at all
        ("c", swapped_token),  # the link swapped
        ("c", other_key.sign_object(evil)),
        ("c", other_salt.sign_object(evil)),
        ("c", good_open),  # an open token is not a click token
        ("c", signing.dumps(evil, salt=CLICK_SALT)),  # Django's default separator
        ("o", flip(good_open, len(good_open) - 3)),
        ("o", good_open[:-4]),
        ("o", good_click),
        ("o", other_open_key.sign_object([message_id.hex, RCPT])),
    ]


def forgeries(message_id) -> list[tuple[str, str]]:
    good_click = click_token(message_id, RCPT, "https://example.com/ok", "HTML")
    good_open = open_token(message_id, RCPT)
    raw = base64.urlsafe_b64decode(good_click + "=" * (-len(good_click) % 4))
    other_key = crypto.seal(["another-key"], CLICK_SALT.encode(), b'j["x"]')
    return (
        [
            ("c", flip(good_click, len(good_click) - 5)),  # one character of the tag
            ("c", flip(good_click, 20)),  # one character of the ciphertext
            ("c", flip(good_click, 2)),  # one character of the nonce
            ("c", good_click[:-1]),  # truncated
            ("c", good_click[:30]),
            ("c", good_click + "A"),
            ("c", good_click + "!"),  # a character outside base64url
            ("c", base64.urlsafe_b64encode(raw[:12] + bytes(len(raw) - 12)).decode().rstrip("=")),
            ("c", other_key),
            ("c", good_open),  # an open token is not a click token
            ("c", "A" * 200),
            ("o", flip(good_open, len(good_open) - 3)),
            ("o", good_open[:-4]),
            ("o", good_click),
            ("o", crypto.seal(["another-key"], OPEN_SALT.encode(), b'j["a","b"]')),
        ]
        + legacy_forgeries(message_id)
    )


def test_tokens_show_neither_the_address_nor_the_url():
    message_id = uuid.uuid4()
    url = "https://shop.example.com/orders/12345?customer=reader"
    tokens = [click_token(message_id, RCPT, url, "HTML"), open_token(message_id, RCPT)]
    for token in tokens:
        assert "~" not in token
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        for secret in (RCPT, url, "shop.example.com", message_id.hex, "reader"):
            assert secret.encode() not in decoded
            assert secret.encode() not in zlib_or_empty(decoded)
            for shift in range(3):  # base64 of the value at any alignment
                shown = base64.urlsafe_b64encode(b"x" * shift + secret.encode()).decode()[4:-4]
                assert len(shown) < 6 or shown not in token
    # Two tokens of the same link differ (a random nonce): they tell nothing about each other.
    assert click_token(message_id, RCPT, url, "HTML") != tokens[0]
    assert read_click_token(tokens[0]) == ClickToken(message_id, RCPT, url, "HTML")
    assert read_open_token(tokens[1]) == OpenToken(message_id, RCPT)


def zlib_or_empty(data: bytes) -> bytes:
    for start in range(len(data)):
        try:
            return zlib.decompressobj().decompress(data[start:], 4096)
        except zlib.error:
            continue
    return b""


def test_tokens_read_under_a_fallback_key_and_refused_after_it_is_gone(settings):
    message_id = uuid.uuid4()
    token = click_token(message_id, RCPT, "https://example.com/a", "Text")
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-key-" + "x" * 40, [old_key]
    assert read_click_token(token).url == "https://example.com/a"
    settings.SECRET_KEY_FALLBACKS = []
    assert read_click_token(token) is None


def test_long_urls_make_tokens_no_longer_than_the_signed_form():
    message_id = uuid.uuid4()
    url = "https://example.com/" + "/".join(["section"] * 40) + "?utm_source=mail&utm_medium=x"
    token = click_token(message_id, RCPT, url, "HTML")
    assert read_click_token(token).url == url
    assert len(token) <= len(legacy_click_token(message_id, RCPT, url)) + 20


@pytest.mark.urls("tracking.tests.tracking_urls")
def test_links_of_the_earlier_signed_form_still_work(client, server):
    message = stored(server)
    link = legacy_click_token(message.message_id, RCPT, "https://example.com/old")
    response = client.get(f"/c/{link}")
    assert response.status_code == 302 and response["Location"] == "https://example.com/old"
    assert client.get(f"/o/{legacy_open_token(message.message_id, RCPT)}.gif").status_code == 200
    assert MessageEvent.objects.filter(type="Click").count() == 1
    assert MessageEvent.objects.filter(type="Open").count() == 1


@pytest.mark.urls("tracking.tests.tracking_urls")
def test_forged_tokens_are_404_over_http_and_record_nothing(live_server, server):
    message = stored(server)
    for kind, token in forgeries(message.message_id):
        status, headers, _ = http_get(f"{live_server.url}/{kind}/{token}")
        assert status == 404, (kind, token)
        assert "Location" not in headers
    status, _, _ = http_get(f"{live_server.url}/c/")
    assert status == 404
    assert not MessageEvent.objects.exists()


@pytest.mark.urls("tracking.tests.tracking_urls")
def test_purged_message_gif_and_redirect_but_no_event(client, server):
    message = stored(server)
    pixel = open_url(message.message_id, RCPT)[len(BASE) :]
    link = click_url(message.message_id, RCPT, "https://example.com/z", "HTML")
    message.delete()
    response = client.get(pixel)
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    response = client.get(link[len(BASE) :])
    assert response.status_code == 302 and response["Location"] == "https://example.com/z"
    assert not MessageEvent.objects.exists()


# The root URLconf as it will be: tracking first, then the site (admin, the API catch-all).
def _site_urlpatterns():
    from django.urls import include, path

    from postmark_site import urls as site

    return [path("", include("tracking.urls")), *site.urlpatterns]


urlpatterns = _site_urlpatterns()
handler404 = "api.errors.handler404"


@pytest.mark.urls(__name__)
def test_under_the_site_urlconf_tracking_wins_and_forgeries_never_redirect(client, server):
    message = stored(server)
    link = click_url(message.message_id, RCPT, "https://example.com/ok", "HTML")
    response = client.get(link[len(BASE) :])
    assert response.status_code == 302 and response["Location"] == "https://example.com/ok"
    for kind, token in forgeries(message.message_id):
        response = client.get(f"/{kind}/{token}")
        assert response.status_code == 404, (kind, token)
    assert MessageEvent.objects.count() == 1


# --- hostile headers cost time linear in their size --------------------------------------------

HUGE_PARAMETERS = b";\r\n a=b" * 40_000  # 280 kB of parameters


@pytest.mark.parametrize(
    "raw",
    [
        # A stray quote: the standard library counted the quotes again for every ';' (9 s).
        b'Content-Type: text/html; charset=utf-8; x="'
        + HUGE_PARAMETERS
        + b'\r\n\r\n<html><body><a href="https://example.com/">x</a></body></html>\r\n',
        b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
        b'Content-Type: text/html; charset=utf-8; x="'
        + HUGE_PARAMETERS
        + b"\r\n\r\n<html><body></body></html>\r\n--b--\r\n",
        b"Content-Type: text/html\r\nX-Folded: a\r\n"
        + b" "
        + b"b" * 70
        + b"\r\n" * 30_000
        + b"\r\n<html><body></body></html>\r\n",
    ],
    ids=["parameters of the message", "parameters of a part", "a folded field"],
)
def test_tracking_a_message_with_a_huge_header_takes_no_time(raw):
    import time

    started = time.process_time()  # CPU time: a busy machine does not count
    out = apply_tracking(unsaved(raw, opens=True, links="HtmlAndText"), RCPT)
    assert time.process_time() - started < 2
    assert b"/o/" in out
