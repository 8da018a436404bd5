"""The HTTP API's request rate limits (issue 22): per API token, and per client address for
Postmark's public test token, counted in the project's database so that every web process holds
the same limit; over it HTTP 429 with Postmark's error body (ErrorCode 429, "Rate Limit
Exceeded") and a Retry-After, before the body is read. Through Django's test client and through
two gunicorn processes.

The counters live in a cache table reached through its own database connection (alias
``rate_limits``); these tests are allowed it and run outside a transaction, and start from empty
counters. Other tests are not allowed it: their requests are not counted."""

import json
import socket

import pytest
from django.core.cache import caches
from django.test import Client

from api import throttling
from api.tests.test_api_request_bounds import CountingInput
from conftest import free_port, subprocess_env, wait_for
from servers.models import AccountToken
from streams.services import create_server

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "rate_limits"])

TEST_TOKEN = "POSTMARK_API_TEST"
MESSAGE = {"From": "app@example.com", "To": "user@example.net", "TextBody": "x"}


@pytest.fixture(autouse=True)
def empty_counters(settings):
    caches[settings.API_RATE_LIMIT_CACHE].clear()
    yield
    caches[settings.API_RATE_LIMIT_CACHE].clear()


def token_of(server) -> str:
    return server.tokens.first().token


def assert_throttled(response) -> int:
    """The Retry-After of a 429 in Postmark's shape."""
    assert response.status_code == 429, response.content
    assert response["Content-Type"] == "application/json; charset=utf-8"
    body = response.json()
    assert set(body) == {"ErrorCode", "Message"} and body["ErrorCode"] == 429
    assert body["Message"].startswith("Rate limit exceeded")
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    return retry_after


@pytest.mark.parametrize("kind", ["server", "account"])
def test_each_token_has_its_own_rate(settings, kind):
    settings.API_TOKEN_RATE = "3/min"
    if kind == "server":
        header, path = "HTTP_X_POSTMARK_SERVER_TOKEN", "/deliverystats"
        first, second = token_of(create_server("A")), token_of(create_server("B"))
    else:
        header, path = "HTTP_X_POSTMARK_ACCOUNT_TOKEN", "/domains?count=10&offset=0"
        first, second = AccountToken.issue("a").token, AccountToken.issue("b").token
    client = Client(**{header: first})
    assert [client.get(path).status_code for _ in range(3)] == [200] * 3
    assert_throttled(client.get(path))
    assert Client(**{header: second}).get(path).status_code == 200


def test_the_counter_holds_no_token(settings):
    settings.API_TOKEN_RATE = "3/min"
    token = token_of(create_server("Secretive"))
    Client(HTTP_X_POSTMARK_SERVER_TOKEN=token).get("/deliverystats")
    from django.db import connections

    with connections[settings.API_RATE_LIMIT_CACHE].cursor() as cursor:
        cursor.execute("SELECT cache_key, value FROM api_rate_limits")
        rows = cursor.fetchall()
    assert rows and not any(token in key or token in value for key, value in rows)


def test_the_test_token_is_limited_per_client_address(settings):
    settings.API_TEST_TOKEN_RATE = "2/min"

    def send(address: str, **extra):
        client = Client(HTTP_X_POSTMARK_SERVER_TOKEN=TEST_TOKEN, REMOTE_ADDR=address, **extra)
        return client.post("/email", json.dumps(MESSAGE), content_type="application/json")

    assert [send("192.0.2.1").status_code for _ in range(2)] == [200, 200]
    assert_throttled(send("192.0.2.1"))
    # Not believed without a proxy in front (API_NUM_PROXIES = 0): a header anyone can send.
    assert_throttled(send("192.0.2.1", HTTP_X_FORWARDED_FOR="198.51.100.7"))
    assert send("192.0.2.2").status_code == 200
    # The test token's limit is not a server token's.
    server_token = Client(HTTP_X_POSTMARK_SERVER_TOKEN=token_of(create_server("Real")),
                          REMOTE_ADDR="192.0.2.1")  # fmt: skip
    sent = server_token.post("/email", json.dumps(MESSAGE), content_type="application/json")
    assert sent.status_code == 200


def test_a_throttled_request_is_not_read(settings):
    settings.API_TEST_TOKEN_RATE = "1/min"
    client = Client(HTTP_X_POSTMARK_SERVER_TOKEN=TEST_TOKEN)
    sent = client.post("/email", json.dumps(MESSAGE), content_type="application/json")
    assert sent.status_code == 200
    body = json.dumps([MESSAGE] * 400).encode()
    stream = CountingInput(body)
    response = client.post(
        "/email/batch", data=b"", content_type="application/json",
        **{"wsgi.input": stream, "CONTENT_LENGTH": str(len(body))},
    )  # fmt: skip
    assert_throttled(response)
    assert stream.read_bytes == 0


def test_no_rate_means_no_limit(settings):
    settings.API_TOKEN_RATE = ""
    client = Client(HTTP_X_POSTMARK_SERVER_TOKEN=token_of(create_server("Unlimited")))
    assert {client.get("/deliverystats").status_code for _ in range(20)} == {200}


def test_a_failing_counter_lets_requests_through(settings, monkeypatch):
    settings.API_TOKEN_RATE = "1/min"

    class Broken:
        def __getitem__(self, alias):
            raise ConnectionError("the cache is down")

    monkeypatch.setattr(throttling, "caches", Broken())
    client = Client(HTTP_X_POSTMARK_SERVER_TOKEN=token_of(create_server("Cache down")))
    assert [client.get("/deliverystats").status_code for _ in range(3)] == [200] * 3


def test_rates_are_read_as_documented():
    assert throttling.parse_rate("3000/min") == (3000, 60)
    assert throttling.parse_rate("5/s") == (5, 1)
    assert throttling.parse_rate("100/h") == (100, 3600)
    assert throttling.parse_rate("1000/day") == (1000, 86400)
    assert throttling.parse_rate("") is None
    with pytest.raises(ValueError):
        throttling.parse_rate("ten/min")


# --- shared by every process ----------------------------------------------------------------------


def get(port: int, path: str, token: str | None = None) -> int:
    auth = f"X-Postmark-Server-Token: {token}\r\n" if token else ""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n".encode()
        )
        return int(sock.recv(100).split()[1])


def test_the_rate_holds_across_web_processes(start_process):
    token = token_of(create_server("Busy"))
    ports = []
    for name in ("web-a", "web-b"):
        port = free_port()
        start_process(
            ["-m", "gunicorn", "postmark_site.wsgi:application", "--config",
             "postmark_site/gunicorn.py", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            env=subprocess_env(API_TOKEN_RATE="4/min", LOG_LEVEL="WARNING"), name=name,
        )  # fmt: skip
        wait_for(lambda p=port: _up(p), what=name)
        ports.append(port)
    answers = [get(port, "/deliverystats", token) for port in (*ports, *ports)]
    assert answers == [200] * 4
    assert {get(port, "/deliverystats", token) for port in ports} == {429}


def _up(port: int) -> bool:
    try:
        return get(port, "/healthz") == 200
    except OSError:
        return False
