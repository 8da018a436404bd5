"""Property-based tests of the whole HTTP API: whatever a client sends — any value in any query
parameter, path segment, header or body field of any endpoint, bodies that are not JSON, JSON
nested thousands deep, huge numbers, NUL, lone surrogates, dates at the ends of the calendar,
URLs whose host cannot be encoded — the answer is never a 500, and every error is Postmark's
``{"ErrorCode": <int>, "Message": "<text>"}`` with HTTP 4xx (compat §2). Run on SQLite and
PostgreSQL like the rest of the suite.

``make test`` runs a bounded, derandomised number of examples per test (about 20 seconds in all);
``make fuzz-api`` sets ``API_FUZZ_EXAMPLES`` (``make fuzz``: ``FUZZ_EXAMPLES``) to run many more,
with new random examples each time and failures kept in ``data/hypothesis-api`` to be replayed
first on the next run.
"""

import json
import logging
import os
import socket
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from api.errors import is_api_path
from api.routing import canonical_path
from bounces.services import record_bounce
from bounces.types import BOUNCE_TYPES
from streams import suppressions
from streams.models import Suppression
from webhooks import guard
from webhooks.models import Webhook

pytestmark = pytest.mark.fuzz

JSON = "application/json; charset=utf-8"
# Examples per test in a long run: `make fuzz-api` (this module) or `make fuzz` (every fuzz test).
LONG_RUN_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES") or os.environ.get("FUZZ_EXAMPLES") or 0)


def fuzz(examples: int):
    """Hypothesis settings: ``examples`` per test in the normal suite, derandomised so that
    every run tries the same inputs; ``API_FUZZ_EXAMPLES`` random ones in a long run."""
    if LONG_RUN_EXAMPLES:
        saved = Path(__file__).resolve().parents[2] / "data" / "hypothesis-api"
        return settings(
            max_examples=LONG_RUN_EXAMPLES,
            deadline=None,
            derandomize=False,
            database=DirectoryBasedExampleDatabase(saved),
            suppress_health_check=list(HealthCheck),
        )
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# --- values ---------------------------------------------------------------------------------------

# Values the database or the encoder cannot take as they are.
HOSTILE_TEXT = [
    "\x00", "a\x00b", "\ud800", "x\udfffy", "\ud83d", "a\ud800@example.com",
    "a\x00@example.com", "\r\n", "\x7f", "9" * 5000, "a" * 5000, "é" * 400,
]  # fmt: skip
# Values a careless parser or look-up trips over.
ODD_TEXT = [
    "", " ", "\t", "\U0001f600", "null", "true", "TRUE", "false", "-1", "0", "1e999", "NaN",
    "Infinity", "-0", "1.5", "9" * 25, "%", "_", "%_\\", "'", '"', "\\", "<b>",
    "٢٠٢١-٠١-٠١", "user@example.com", "USER@EXAMPLE.COM", "x@" + "a" * 70 + ".com",
    "a" * 64 + "@" + ("b" * 63 + ".") * 4 + "com", "outbound", "broadcast", "inbound",
    "HardBounce", "SpamComplaint", "ManualSuppression", "Customer", "Recipient", "Admin",
    "00000000-0000-0000-0000-000000000000",
]  # fmt: skip

# Any character, including NUL, other controls and lone surrogates.
any_char = st.one_of(
    st.characters(),
    st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\x7f", "\r", "\n", "é"]),
)
texts = st.one_of(
    st.sampled_from(HOSTILE_TEXT), st.sampled_from(ODD_TEXT), st.text(any_char, max_size=40)
)


def _offsets():
    return st.one_of(
        st.sampled_from(["", "Z", "z", "+14:00", "-23:59", "+99:99", "-0500", "+05", " 02:00"]),
        st.integers(-99, 99).map(lambda h: f"{h:+03d}:00"),
    )


@st.composite
def _date_texts(draw):
    year = draw(st.sampled_from([0, 1, 2, 1969, 1970, 2021, 9998, 9999, 10000]))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    text = f"{year:04d}-{month:02d}-{day:02d}"
    if draw(st.booleans()):
        hour = draw(st.integers(0, 25))
        text += f"T{hour:02d}:{draw(st.integers(0, 60)):02d}:{draw(st.integers(0, 60)):02d}"
        text += draw(st.sampled_from(["", ".9070259", ",5", ".", ".1234567890123"]))
        text += draw(_offsets())
    return text


EDGE_DATES = [
    "9999-12-31", "9999-12-31T23:59:59.9999999-23:59", "9999-12-31T23:00:00", "0001-01-01",
    "0001-01-01T00:00:00+14:00", "0000-01-01", "10000-01-01", "2021-01-01T12:00:00+99:99",
    "2021-01-01T12:00:00 05:00", "2021-02-30", "2021-01-01T24:00:00",
]  # fmt: skip
dates = st.one_of(
    st.sampled_from(EDGE_DATES),
    st.dates().map(str),
    st.datetimes(
        timezones=st.none() | st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))
    ).map(datetime.isoformat),
    _date_texts(),
    texts,
)
integers_as_text = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "1", "10", "500", "501", "9500", "10000", "-0", "+5", " 7 ", "1_0"]),
    texts,
)


def spelled(name: str):
    """A parameter or field name as different clients spell it."""
    return st.sampled_from([name, name.lower(), name.upper(), name.swapcase()])


def query_string(pairs) -> str:
    """Percent-encoded as a client would send it; a lone surrogate goes out as the bytes
    UTF-8 would give it (which the server must then read as invalid UTF-8)."""
    return "&".join(
        quote(name.encode("utf-8", "surrogatepass"), safe="")
        + "="
        + quote(value.encode("utf-8", "surrogatepass"), safe="")
        for name, value in pairs
    )


def path_segment(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def queries(draw, parameters: dict):
    """A query string naming some of ``parameters`` (name → strategy of its values)."""
    names = draw(st.lists(st.sampled_from(sorted(parameters)), unique=True, max_size=6))
    pairs = [(draw(spelled(name)), draw(parameters[name])) for name in names]
    if draw(st.integers(0, 9)) == 0:
        pairs.append((draw(texts), draw(texts)))  # a parameter nobody asked for
    return query_string(pairs)


# JSON: any value Python's encoder writes, NaN, Infinity, huge numbers and lone surrogates
# (written as \ud800 escapes) included.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**80), 10**80),
    st.floats(),
    texts,
)


def _containers(inner):
    return st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4)


json_values = st.recursive(json_scalars, _containers, max_leaves=12)


@st.composite
def deep_json(draw):
    depth = draw(st.sampled_from([31, 32, 33, 100, 999, 1000, 5000, 50_000]))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"Url":', "}]")]))
    return opener * depth + draw(st.sampled_from(["1", "null", '"x"', ""])) + closer * depth


raw_bodies = st.one_of(
    st.binary(max_size=100),
    deep_json(),
    st.sampled_from(
        [
            b"",
            b"   ",
            b"null",
            b"[]",
            b"{}",
            b'"x"',
            b"1e999",
            b"NaN",
            b"-Infinity",
            b"1" * 5000,
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{\x00}\x00",
            b'{"a": "\\ud800"}',
            b'{"a": "\\u0000"}',
            b"{'a': 1}",
            b"<xml/>",
            b"a=b&c=d",
            b'{"a":1,}',
        ]
    ),  # fmt: skip
)


@st.composite
def bodies(draw, fields: dict):
    """A request body: JSON with some of ``fields`` (name → strategy) in any spelling, or any
    JSON value, or bytes that are not JSON at all."""
    kind = draw(st.sampled_from(["fields", "fields", "fields", "fields", "json", "raw", "none"]))
    if kind == "none":
        return None
    if kind == "raw":
        return draw(raw_bodies)
    if kind == "json":
        value = draw(json_values)
    else:
        names = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, min_size=1))
        value = {draw(spelled(name)): draw(fields[name]) for name in names}
    return json.dumps(value).encode()


# --- requests -------------------------------------------------------------------------------------


def offline_resolve(host, port):
    """``socket.getaddrinfo`` without the network: host names are encoded exactly as for a real
    look-up (a bad name raises as it would), then answered with one public address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        return ["93.184.216.34"]
    return [info[4][0] for info in infos]


@pytest.fixture
def world(server, other_server, monkeypatch):
    """A server with bounces, suppressions and a webhook to aim at, another server whose ids
    must stay out of reach, and look-ups that never leave the machine."""
    monkeypatch.setattr(guard, "resolve", offline_resolve)
    # Thousands of 4xx answers are expected here; a 500 is still logged (and fails the test).
    monkeypatch.setattr(logging.getLogger("django.request"), "level", logging.ERROR)
    outbound = server.streams.get(stream_id="outbound")
    bounces = [
        record_bounce(
            server=server,
            stream=outbound,
            message_stream="outbound",
            type=kind,
            email=f"{kind.lower()}@example.com",
            content="dump",
            tag="tag",
            inactive=True,
            can_activate=kind == "HardBounce",
        )
        for kind in ("HardBounce", "SpamComplaint", "SMTPApiError", "Transient")
    ]
    foreign = record_bounce(server=other_server, message_stream="outbound", type="HardBounce",
                            email="x@example.com", inactive=True, can_activate=True)  # fmt: skip
    suppressions.suppress(outbound, "gone@example.com", Suppression.Reason.MANUAL,
                          Suppression.Origin.CUSTOMER)  # fmt: skip
    suppressions.suppress(outbound, "spam@example.com", Suppression.Reason.SPAM_COMPLAINT,
                          Suppression.Origin.RECIPIENT)  # fmt: skip
    webhook = Webhook.objects.create(stream=outbound, url="https://hooks.example.com/x")
    foreign_webhook = Webhook.objects.create(
        stream=other_server.streams.get(stream_id="outbound"), url="https://hooks.example.com/y"
    )
    client = Client(raise_request_exception=True)
    return {
        "client": client,
        "token": server.tokens.first().token,
        "bounce_ids": [str(b.pk) for b in bounces] + [str(foreign.pk)],
        "webhook_ids": [str(webhook.pk), str(foreign_webhook.pk)],
    }


def send(world, method: str, path: str, body: bytes | None = None, headers=None, token=True):
    """One request, rolled back afterwards so that every example sees the same data; returns
    the response after checking that it is no 500 and, on API paths, Postmark-shaped."""
    headers = dict(headers or {})
    if token is True:
        headers.setdefault("X-Postmark-Server-Token", world["token"])
    elif token is not None:
        headers["X-Postmark-Server-Token"] = token
    content_type = headers.pop("Content-Type", "application/json")
    with transaction.atomic():
        # The full URL, so that a path like //bounces is not read as a host name.
        response = world["client"].generic(
            method,
            "http://testserver" + path,
            data=body or b"",
            content_type=content_type,
            headers=headers,
        )
        transaction.set_rollback(True)
    assert_postmark_answer(response, method, path)
    return response


def assert_postmark_answer(response, method: str, path: str) -> None:
    status = response.status_code
    assert status < 500, (method, path, status, response.content[:300])
    route = canonical_path(path.split("?", 1)[0])
    tracking = route.startswith(("/o/", "/c/")) and route.count("/") == 2
    if not is_api_path(route) or tracking or route == "/" or method.upper() == "HEAD":
        return
    body = json.loads(response.content)
    if status >= 400:
        assert response["Content-Type"] == JSON, (method, path, status)
        assert set(body) == {"ErrorCode", "Message"}, (method, path, body)
        assert isinstance(body["ErrorCode"], int) and not isinstance(body["ErrorCode"], bool)
        assert body["ErrorCode"] != 0
        assert isinstance(body["Message"], str) and body["Message"]


def ids(world, kind: str):
    return st.one_of(st.sampled_from(world[kind]), integers_as_text, texts)


STREAMS = st.one_of(st.sampled_from(["outbound", "broadcast", "inbound", "OUTBOUND"]), texts)


# --- every endpoint -------------------------------------------------------------------------------

BOUNCE_QUERY = {
    "count": integers_as_text,
    "offset": integers_as_text,
    "type": st.one_of(st.sampled_from(list(BOUNCE_TYPES)), texts),
    "inactive": st.one_of(st.sampled_from(["true", "False", "1", "no"]), texts),
    "emailFilter": texts,
    "tag": texts,
    "messageID": st.one_of(st.uuids().map(str), texts),
    "fromdate": dates,
    "todate": dates,
    "messagestream": STREAMS,
}


@pytest.mark.django_db
@fuzz(200)
@given(data=st.data())
def test_bounce_list_never_fails(world, data):
    params = dict(BOUNCE_QUERY)
    query = data.draw(queries(params), label="query")
    # Most lists give a valid page, so that the filters behind count and offset are reached.
    if data.draw(st.integers(0, 3), label="page") and "count=" not in query.lower():
        query = "count=10&offset=0&" + query
    send(world, "GET", f"/bounces?{query}")


@pytest.mark.django_db
@fuzz(80)
@given(data=st.data())
def test_bounce_by_id_never_fails(world, data):
    bounce_id = data.draw(ids(world, "bounce_ids"), label="id")
    suffix, method = data.draw(
        st.sampled_from([("", "GET"), ("/dump", "GET"), ("/activate", "PUT")]), label="endpoint"
    )
    body = data.draw(bodies({"Any": json_values}), label="body")
    send(world, method, f"/bounces/{path_segment(bounce_id)}{suffix}", body)


@pytest.mark.django_db
@fuzz(40)
@given(data=st.data())
def test_stats_and_tags_never_fail(world, data):
    path = data.draw(st.sampled_from(["/deliverystats", "/bounces/tags", "/deliveryStats/"]))
    query = data.draw(queries({"count": integers_as_text, "tag": texts, "fromdate": dates}))
    send(world, "GET", f"{path}?{query}")


SUPPRESSION_QUERY = {
    "SuppressionReason": st.one_of(st.sampled_from(Suppression.Reason.values), texts),
    "Origin": st.one_of(st.sampled_from(Suppression.Origin.values), texts),
    "fromdate": dates,
    "todate": dates,
    "EmailAddress": st.one_of(st.sampled_from(["gone@example.com", "spam@example.com"]), texts),
}
addresses = st.one_of(
    st.sampled_from(["gone@example.com", "spam@example.com", "new@example.com"]),
    st.emails(),
    texts,
    texts,
    json_values,
)
suppression_entries = st.one_of(
    st.fixed_dictionaries({"EmailAddress": addresses}),
    st.dictionaries(spelled("EmailAddress"), addresses, max_size=1),
    addresses,
)
SUPPRESSION_BODY = {"Suppressions": st.one_of(st.lists(suppression_entries, max_size=6),
                                              json_values)}  # fmt: skip


@pytest.mark.django_db
@fuzz(100)
@given(data=st.data())
def test_suppression_dump_never_fails(world, data):
    stream = data.draw(STREAMS, label="stream")
    query = data.draw(queries(SUPPRESSION_QUERY), label="query")
    send(world, "GET", f"/message-streams/{path_segment(stream)}/suppressions/dump?{query}")


@pytest.mark.django_db
@fuzz(150)
@given(data=st.data())
def test_suppression_create_and_delete_never_fail(world, data):
    stream = data.draw(STREAMS, label="stream")
    action = data.draw(st.sampled_from(["", "/delete"]), label="action")
    body = data.draw(bodies(SUPPRESSION_BODY), label="body")
    send(world, "POST", f"/message-streams/{path_segment(stream)}/suppressions{action}", body)


@st.composite
def hosts(draw):
    kind = draw(st.sampled_from(["name", "name", "label", "edge", "ip", "text"]))
    if kind == "edge":
        return draw(st.sampled_from(["a" * 70 + ".example.com", "a..b", ".example.com",
                                     ("x" * 63 + ".") * 4 + "com", "exa\x00mple.com",
                                     "bücher.example", "\ufffd.com", "example.com."]))  # fmt: skip
    if kind == "ip":
        return draw(st.sampled_from(["93.184.216.34", "127.0.0.1", "10.0.0.1", "[::1]",
                                     "[2606:4700::1111]", "[::ffff:127.0.0.1]", "[fe80::1%25lo]",
                                     "[::1", "0x7f.1", "999.1.1.1"]))  # fmt: skip
    if kind == "text":
        return draw(texts)
    alphabet = string.ascii_lowercase + string.digits + "-_é\x00."
    label_size = 70 if kind == "label" else 12
    labels = draw(st.lists(st.text(alphabet, max_size=label_size), min_size=1, max_size=5))
    return ".".join(labels)


@st.composite
def urls(draw):
    scheme = draw(st.sampled_from(["https", "http", "HTTPS", "ftp", "javascript", ""]))
    userinfo = draw(st.sampled_from(["", "u:p@", "user@", ":@", "bob:s%40cret@", "%00:%ff@"]))
    port = draw(st.sampled_from(["", ":443", ":0", ":99999", ":-1", ":x"]))
    path = draw(st.one_of(st.sampled_from(["/", "/hook?a=b", ""]), texts.map(lambda t: "/" + t)))
    url = f"{scheme}://{userinfo}{draw(hosts())}{port}{path}"
    if draw(st.integers(0, 20)) == 0:
        url += "/" + "x" * draw(st.sampled_from([1990, 2000, 5000]))
    return url


headers_lists = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {
                "Name": st.one_of(st.sampled_from(["X-A", "Host", "Authorization"]), texts),
                "Value": st.one_of(json_scalars, st.text(any_char)),
            }
        ),
        max_size=3,
    ),
    json_values,
)
flags = st.one_of(st.booleans(), st.sampled_from(["true", "FALSE", "yes"]), json_values)
triggers = st.one_of(
    st.dictionaries(
        st.one_of(
            st.sampled_from(
                ["Open", "Click", "Delivery", "Bounce", "SpamComplaint", "SubscriptionChange"]
            ),
            texts,
        ),
        st.one_of(
            st.dictionaries(
                st.sampled_from(["Enabled", "IncludeContent", "PostFirstOpenOnly"]),
                flags,
                max_size=3,
            ),
            json_values,
        ),
        max_size=3,
    ),
    json_values,
)
WEBHOOK_BODY = {
    "Url": st.one_of(urls(), texts, json_values),
    "MessageStream": st.one_of(STREAMS, json_values),
    "HttpAuth": st.one_of(
        st.fixed_dictionaries(
            {"Username": st.one_of(texts, json_scalars), "Password": st.one_of(texts, json_scalars)}
        ),
        json_values,
    ),
    "HttpHeaders": headers_lists,
    "Triggers": triggers,
}


@pytest.mark.django_db
@fuzz(200)
@given(data=st.data())
def test_webhook_create_never_fails(world, data):
    body = data.draw(bodies(WEBHOOK_BODY), label="body")
    send(world, "POST", "/webhooks", body)


@pytest.mark.django_db
@fuzz(150)
@given(data=st.data())
def test_webhook_by_id_never_fails(world, data):
    webhook_id = data.draw(ids(world, "webhook_ids"), label="id")
    method = data.draw(st.sampled_from(["GET", "PUT", "PUT", "DELETE"]), label="method")
    body = data.draw(bodies(WEBHOOK_BODY), label="body") if method == "PUT" else None
    send(world, method, f"/webhooks/{path_segment(webhook_id)}", body)


@pytest.mark.django_db
@fuzz(60)
@given(data=st.data())
def test_webhook_list_never_fails(world, data):
    query = data.draw(queries({"MessageStream": STREAMS}), label="query")
    send(world, "GET", f"/webhooks?{query}")


# --- anything at all ------------------------------------------------------------------------------

PATHS = [
    "/deliverystats", "/bounces", "/bounces/tags", "/bounces/{bounce}", "/bounces/{bounce}/dump",
    "/bounces/{bounce}/activate", "/message-streams/outbound/suppressions",
    "/message-streams/outbound/suppressions/dump", "/message-streams/outbound/suppressions/delete",
    "/webhooks", "/webhooks/{webhook}", "/openapi.json", "/", "//bounces//", "/email", "/o/x",
    "/c/x", "/static/x", "/admin",
]  # fmt: skip
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND"]
latin1_text = st.text(st.characters(max_codepoint=255), max_size=60)


@st.composite
def paths(draw, world):
    template = draw(st.sampled_from(PATHS))
    path = template.format(
        bounce=draw(st.sampled_from(world["bounce_ids"])),
        webhook=draw(st.sampled_from(world["webhook_ids"])),
    )
    if draw(st.booleans()):
        path += "/" + path_segment(draw(texts))
    if draw(st.booleans()):
        path = path.upper() if draw(st.booleans()) else path + "/"
    return path


@pytest.mark.django_db
@fuzz(200)
@given(data=st.data())
def test_any_request_never_fails(world, data):
    path = data.draw(paths(world), label="path")
    method = data.draw(st.one_of(st.sampled_from(METHODS),
                                 st.text(string.ascii_uppercase, min_size=1, max_size=8)),
                       label="method")  # fmt: skip
    query = data.draw(queries({"count": integers_as_text, "offset": integers_as_text,
                               "fromdate": dates, "tag": texts}), label="query")  # fmt: skip
    token = data.draw(
        st.one_of(st.just(True), st.just(True), st.none(), latin1_text), label="token"
    )
    headers = {}
    for name in ("Accept", "Content-Type", "X-Postmark-Account-Token"):
        if data.draw(st.booleans(), label=f"has {name}"):
            headers[name] = data.draw(
                st.one_of(st.sampled_from(["application/json", "text/plain", "*/*",
                                           "application/json; q=x", "; ;", ""]), latin1_text),
                label=name,
            )  # fmt: skip
    body = data.draw(st.one_of(st.none(), raw_bodies, json_values.map(json.dumps)), label="body")
    if isinstance(body, str):
        body = body.encode()
    send(world, method, f"{path}?{query}", body, headers=headers, token=token)
