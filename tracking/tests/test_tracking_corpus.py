"""Link rewriting against real-world HTML shapes, and reader classification by ua-parser.

Each corpus entry is a template: ``[[url]]`` is an href value that must become a click-tracking
URL of ``url`` (keeping its quotes), ``<<url>>`` an unquoted one (which gains double quotes);
every other character must come out byte for byte as it went in."""

import html
import re
import uuid

import pytest

from messages.models import OutboundMessage
from tracking.agents import classify_user_agent
from tracking.rewrite import apply_tracking
from tracking.tokens import read_click_token

pytestmark = pytest.mark.no_db

BASE = "http://track.test"
RCPT = "reader@example.net"

CORPUS = {
    "double quotes": '<a href="[[https://example.com/a]]">A</a>',
    "single quotes": "<a href='[[https://example.com/b]]'>B</a>",
    "unquoted": "<a href=<<https://example.com/c?x=1>>>C</a>",
    "upper-case tag and attribute": '<A HREF="[[HTTP://EXAMPLE.COM/D]]">D</A>',
    "mixed case, spaces around =": '<a Href = "[[https://example.com/e]]" >E</a>',
    "attributes across lines": (
        '<a\r\n   class="btn"\r\n   href="[[https://example.com/f]]"\r\n'
        '   target="_blank"\r\n>F</a>'
    ),
    "href after a quoted >": '<a title="1 > 0" href="[[https://example.com/g]]">G</a>',
    "href named inside another value": (
        '<a title=\'see href="https://no.example/"\' href="[[https://example.com/h]]">H</a>'
    ),
    "data-href is not href": '<a data-href="https://no.example/" href="[[https://example.com/i]]">I</a>',
    "entities in the URL": '<a href="[[https://example.com/j?a=1&amp;b=2]]">J</a>',
    "area of an image map": '<map><area shape="rect" href="[[https://example.com/k]]"></map>',
    "self-closing": '<a href="[[https://example.com/l]]"/>',
    "comment": '<!-- <a href="https://no.example/commented">x</a> --><p>after</p>',
    "conditional comment": (
        '<!--[if mso]><a href="https://no.example/mso">x</a><![endif]-->'
        '<a href="[[https://example.com/m]]">M</a>'
    ),
    "script and style": (
        "<script>var s = '<a href=\"https://no.example/js\">';</script>"
        '<style>a[href="https://no.example/css"] {color: red}</style>'
    ),
    "mailto, tel, anchors, javascript": (
        '<a href="mailto:help@example.com">m</a><a href="tel:+1555">t</a>'
        '<a href="#top">a</a><a name="top">n</a><a href="javascript:void(0)">j</a>'
    ),
    "relative without base": '<a href="/account">x</a><a href="page.html">y</a>',
    "empty and missing values": '<a href="">e</a><a href>f</a><a>g</a>',
    "already tracked": f'<a href="{BASE}/c/abc~def">t</a>',
    "template placeholders": '<a href="{{unsubscribe_url}}">u</a>',
    "non-ASCII text around": '<p>Été — ünïcødé</p><a href="[[https://example.com/ü]]">ü</a>',
    "a doctype and head": (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>T</title></head>\n'
        '<body><table><tr><td><a href="[[https://example.com/n]]">N</a></td></tr></table>'
    ),
}

BASE_CASES = {
    "base makes relative links absolute": (
        '<head><base href="https://example.com/dir/"></head>'
        '<a href="page.html">P</a><a href="/root">R</a><a href="#x">X</a>'
        '<a href="mailto:a@b.example">M</a>',
        ["https://example.com/dir/page.html", "https://example.com/root"],
    ),
}


@pytest.fixture(autouse=True)
def tracking_base(settings):
    settings.TRACKING_BASE_URL = BASE


def html_message(body: str) -> OutboundMessage:
    raw = ("Content-Type: text/html; charset=utf-8\r\n\r\n" + body).encode()
    return OutboundMessage(
        message_id=uuid.uuid4(), content=raw, track_opens=False, track_links="HtmlOnly"
    )


def tracked_body(body: str) -> str:
    out = apply_tracking(html_message(body), RCPT).decode()
    return out.split("\r\n\r\n", 1)[1]


def untracked(text: str) -> str:
    """``text`` with every click-tracking URL replaced by TRACKED(<the URL it stands for>)."""

    def original(match):
        token = read_click_token(match.group(1))
        if token is None:  # not one of ours (the corpus's "already tracked" link)
            return match.group(0)
        assert token.recipient == RCPT and token.location == "HTML"
        return f"TRACKED({token.url})"

    return re.sub(re.escape(BASE) + r"/c/([A-Za-z0-9_\-:~.]+)", original, text)


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus(name):
    template = CORPUS[name]
    source = re.sub(r"\[\[(.*?)\]\]|<<(.*?)>>", lambda m: m.group(1) or m.group(2), template)
    expected = re.sub(r"\[\[(.*?)\]\]", lambda m: f"TRACKED({html.unescape(m.group(1))})",
                      template)  # fmt: skip
    expected = re.sub(r"<<(.*?)>>", lambda m: f'"TRACKED({m.group(1)})"', expected)
    assert untracked(tracked_body(source)) == expected


@pytest.mark.parametrize("name", list(BASE_CASES))
def test_base_href(name):
    source, links = BASE_CASES[name]
    out = tracked_body(source)
    found = re.findall(r"TRACKED\((.*?)\)", untracked(out))
    assert found == links
    assert '<base href="https://example.com/dir/">' in out
    assert '<a href="#x">' in out and '<a href="mailto:a@b.example">' in out


def test_unparseable_html_is_delivered_as_it_came():
    for body in ("<a href=", "<<<>>>", "<a href='https://example.com/x", "</a></a><a"):
        assert tracked_body(body) == body


# --- readers --------------------------------------------------------------------------------------

AGENTS = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36": (
        "Desktop", ("Chrome 120.0", "Google", "Chrome"),
        ("Windows 10", "Microsoft Corporation", "Windows"),
    ),
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)": (
        "WebMail", ("Gmail", "Google", "Gmail"), ("Unknown", "Unknown", "Unknown"),
    ),
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html": (
        "WebMail", ("Yahoo Mail", "Yahoo", "Yahoo Mail"), ("Unknown", "Unknown", "Unknown"),
    ),
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148": (
        "Mobile", ("Apple Mail", "Apple Inc.", "Apple Mail"), ("iOS 17.1", "Apple Inc.", "iOS"),
    ),
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)": (
        "Desktop", ("Apple Mail", "Apple Inc.", "Apple Mail"), ("OS X 10.15", "Apple Inc.", "OS X"),
    ),
    "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Thunderbird/115.5.0": (
        "Desktop", ("Thunderbird 115.5", "Mozilla", "Thunderbird"), ("Linux", "Unknown", "Linux"),
    ),
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.43 Mobile Safari/537.36": (
        "Mobile", ("Chrome Mobile 120.0", "Google", "Chrome Mobile"),
        ("Android 14", "Google", "Android"),
    ),
    "Microsoft Office/16.0 (Microsoft Outlook 16.0.1)": (
        "Desktop", ("Outlook 2016", "Microsoft Corporation", "Outlook"),
        ("Unknown", "Unknown", "Unknown"),
    ),
    "": ("Unknown", ("Unknown",) * 3, ("Unknown",) * 3),
    "\x00\ud800 not an agent": ("Unknown", ("Unknown",) * 3, ("Unknown",) * 3),
}  # fmt: skip


@pytest.mark.parametrize("agent", list(AGENTS))
def test_readers_from_ua_parser(agent):
    platform, client, system = AGENTS[agent]
    found = classify_user_agent(agent)
    keys = ("Name", "Company", "Family")
    assert found == {
        "Platform": platform,
        "Client": dict(zip(keys, client, strict=True)),
        "OS": dict(zip(keys, system, strict=True)),
    }
