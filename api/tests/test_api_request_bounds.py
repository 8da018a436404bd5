"""Requests bounded before they are parsed (issue 22): each endpoint's body is refused from its
Content-Length before a byte is read, or as soon as reading passes a limit (bytes, JSON values,
nesting, a batch's items), and the JSON parser never sees it. Through Django's test client with a
``wsgi.input`` that counts what is read, over a real socket (live_server), and through the plain
functions. The timing and memory goals (48 MB in < 1 s, < 50 MB) are in
``bench/tests/test_api_bounds_bench.py``."""

import http.client
import io
import json
import time
from urllib.parse import urlsplit

import pytest
from django.test import Client

from api import bounds
from api.bounds import CHUNK, Bounds, JsonShape, read_body
from api.errors import ApiError

pytestmark = pytest.mark.django_db

JSON = "application/json; charset=utf-8"
TEST_TOKEN = "POSTMARK_API_TEST"


class CountingInput:
    """A request body stream that counts the bytes read from it."""

    def __init__(self, data: bytes):
        self.data = io.BytesIO(data)
        self.read_bytes = 0

    def read(self, size=-1):
        chunk = self.data.read(size)
        self.read_bytes += len(chunk)
        return chunk

    def readline(self, size=-1):
        line = self.data.readline(size)
        self.read_bytes += len(line)
        return line


@pytest.fixture
def never_parsed(monkeypatch):
    """The JSON parser fails the test if it is called."""

    class NoParser:
        @staticmethod
        def loads(*args, **kwargs):
            raise AssertionError("the body was parsed")

    monkeypatch.setattr(bounds, "json", NoParser)


def post(client: Client, path: str, body: bytes, content_length: int | None = None):
    """POST ``body`` through a counting stream; (response, the stream)."""
    stream = CountingInput(body)
    length = len(body) if content_length is None else content_length
    response = client.post(
        path, data=b"", content_type="application/json",
        **{"wsgi.input": stream, "CONTENT_LENGTH": str(length)},
    )  # fmt: skip
    return response, stream


def error(response, status: int, code: int) -> str:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == JSON
    body = response.json()
    assert set(body) == {"ErrorCode", "Message"} and body["ErrorCode"] == code, body
    return body["Message"]


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


@pytest.fixture
def test_token():
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=TEST_TOKEN)


# --- body size, per endpoint ----------------------------------------------------------------------

ENDPOINTS = [
    ("/email", "API_MAX_EMAIL_REQUEST_SIZE", "test"),
    ("/email", "API_MAX_EMAIL_REQUEST_SIZE", "server"),
    ("/email/batch", "API_MAX_BATCH_REQUEST_SIZE", "test"),
    ("/webhooks", "API_MAX_REQUEST_SIZE", "server"),
    ("/message-streams/outbound/suppressions", "API_MAX_REQUEST_SIZE", "server"),
]


@pytest.mark.parametrize(("path", "setting", "token"), ENDPOINTS)
def test_a_body_over_the_limit_is_refused_before_a_byte_is_read(
    path, setting, token, api, test_token, settings, never_parsed
):
    setattr(settings, setting, 10_000)
    client = test_token if token == "test" else api
    body = json.dumps({"Pad": "x" * 10_000}).encode()
    response, stream = post(client, path, body)
    text = error(response, 413, 413)
    assert text == "The request body is larger than the limit of 10000 bytes for this endpoint."
    assert stream.read_bytes == 0


def test_the_defaults_follow_postmarks_limits(settings):
    assert settings.API_MAX_BATCH_REQUEST_SIZE == 50 * 1024 * 1024  # compat §5
    assert settings.API_MAX_EMAIL_REQUEST_SIZE >= 2 * settings.SMTP_MAX_MESSAGE_SIZE
    assert settings.API_MAX_REQUEST_SIZE == 1024 * 1024


def test_a_body_at_the_limit_is_read(api, settings):
    body = json.dumps({"Url": "https://hooks.example.com/x", "Pad": ""}).encode()
    settings.API_MAX_REQUEST_SIZE = len(body)
    response, stream = post(api, "/webhooks", body)
    assert response.status_code != 413, response.content
    assert stream.read_bytes == len(body)


def test_a_body_longer_than_it_says_is_read_no_further(api, settings):
    """A Content-Length under the limit bounds the read even when more bytes follow."""
    body = json.dumps({"Suppressions": [{"EmailAddress": "a@example.com"}]}).encode()
    response, stream = post(api, "/message-streams/outbound/suppressions", body + b"x" * 10**6,
                            content_length=len(body))  # fmt: skip
    assert response.status_code == 200, response.content
    assert stream.read_bytes == len(body)


@pytest.mark.parametrize("length", [None, 5_000])
def test_reading_stops_at_the_limit_whatever_the_length_said(length):
    """The plain function: a stream with no length, or a length that lies, is read at most one
    byte past the limit."""
    stream = CountingInput(b"[" + b"1," * 100_000 + b"1]")
    with pytest.raises(ApiError) as refused:
        read_body(stream, length, Bounds(max_bytes_setting="API_MAX_REQUEST_SIZE_TEST"))
    assert refused.value.status_code == 413
    assert stream.read_bytes == 10_001


@pytest.fixture(autouse=True)
def small_test_limit(settings):
    settings.API_MAX_REQUEST_SIZE_TEST = 10_000


@pytest.mark.django_db(transaction=True)
def test_over_a_real_socket_the_answer_comes_before_the_body(live_server):
    """Content-Length says 60 MB, the client sends 4 bytes and waits: the 413 arrives at once."""
    parts = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    started = time.perf_counter()
    conn.putrequest("POST", "/email/batch")
    conn.putheader("X-Postmark-Server-Token", TEST_TOKEN)
    conn.putheader("Content-Length", str(60 * 1024 * 1024))
    conn.endheaders(b"[{},")
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["ErrorCode"] == 413
    assert time.perf_counter() - started < 5
    conn.close()


# --- shape: a batch's items, values, nesting ------------------------------------------------------


def test_a_huge_batch_of_empty_objects_is_refused_after_its_first_chunk(test_token, never_parsed):
    body = b"[" + b"{}," * 1_000_000 + b"{}]"  # 3 MB: a million items
    response, stream = post(test_token, "/email/batch", body)
    text = error(response, 422, 410)
    assert text.startswith("A batch may hold at most 500 messages; this one has at least ")
    assert stream.read_bytes <= CHUNK


def test_501_messages_are_counted_exactly(test_token, never_parsed):
    message = {"From": "a@example.com", "To": "b@example.net", "TextBody": "x"}
    response, _ = post(test_token, "/email/batch", json.dumps([message] * 501).encode())
    assert error(response, 422, 410) == "A batch may hold at most 500 messages; this one has 501."


@pytest.mark.parametrize(
    ("path", "body", "limit"),
    [
        ("/email", b'{"To": [' + b"{}," * 200_000 + b"{}]}", 10_000),
        ("/email", b'{"Headers": [' + b"1," * 200_000 + b"1]}", 10_000),
        ("/email/batch", b"[[" + b"1," * 300_000 + b"1]]", 250_000),
        ("/webhooks", b'{"HttpHeaders": [' + b'"a",' * 100_000 + b'"a"]}', 10_000),
    ],
)
def test_more_values_than_an_endpoint_takes_are_refused_unparsed(
    test_token, api, path, body, limit, never_parsed
):
    client = api if path == "/webhooks" else test_token
    response, stream = post(client, path, body)
    assert f"more than {limit} JSON values" in error(response, 413, 413)
    assert stream.read_bytes < len(body)


def test_nesting_is_refused_while_reading(test_token, never_parsed):
    body = b"[" * 1_000_000 + b"]" * 1_000_000
    response, stream = post(test_token, "/email/batch", body)
    assert "nested at most 32 levels deep" in error(response, 422, 402)
    assert stream.read_bytes <= CHUNK


# --- the scanner ----------------------------------------------------------------------------------

SHAPES = [
    # text, values, deepest, top-level items
    (b"{}", 1, 1, 0),
    (b"[]", 1, 1, 1),
    (b"[1, 2, 3]", 3, 1, 3),
    (b'[{"a": [1, 2]}, {"b": "x"}]', 6, 3, 2),
    (b'["[", "]", "{,}", ","]', 4, 1, 4),
    (b'["a\\"b", "c\\\\", "\\\\\\"", "]"]', 4, 1, 4),
    (b'{"k": "\\u005b"}', 1, 1, 0),
    (b'"just, a [string]"', 0, 0, 0),
    (b"[[[]], [[], []]]", 8, 3, 2),
]


@pytest.mark.parametrize(("text", "values", "deepest", "items"), SHAPES)
def test_the_shape_of_json_is_the_same_in_any_chunks(text, values, deepest, items):
    for size in (1, 2, 3, len(text)):
        shape = JsonShape()
        for start in range(0, len(text), size):
            shape.feed(text[start : start + size])
        assert (shape.values, shape.deepest, shape.items) == (values, deepest, items), size
        assert not shape.in_string


def test_a_long_string_is_skipped_in_linear_time():
    text = b'["' + b"\\\\" * 5_000_000 + b'", "' + b"x" * 10_000_000 + b'"]'
    started = time.process_time()  # CPU time: a busy machine does not count
    shape = JsonShape()
    for start in range(0, len(text), CHUNK):
        shape.feed(text[start : start + CHUNK])
    assert (shape.values, shape.items) == (2, 2)
    assert time.process_time() - started < 5  # about 0.05 s; a quadratic scan takes minutes
