"""The gateway's /healthz, /readyz and /metrics (runsmtp --http), scraped after real SMTP sessions:
the counters move by exactly what the sessions did, summed over several gateway processes."""

import json
import smtplib
import sys

import pytest

from conftest import MESSAGE, Process, free_port, send, subprocess_env
from smtpgw.tests.metrics_scrape import get, scrape

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def metered_gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    """Two gateway processes sharing the port, with health and metrics on an HTTP port."""
    port, http_port = free_port(), free_port()
    args = [sys.executable, "manage.py", "runsmtp", "--processes", "2",
            "--listen", f"transactional=127.0.0.1:{port}",
            "--http", f"127.0.0.1:{http_port}"]  # fmt: skip
    env = subprocess_env(SMTP_AUTH_CACHE_SECONDS=0, SMTP_AUTH_FAILURE_LIMIT=1000)
    process = Process(args, env, tmp_path_factory.mktemp("metered") / "runsmtp.log")
    process.wait_for("health and metrics on")
    process.wait_for("SMTP gateway ready")
    yield port, f"http://127.0.0.1:{http_port}"
    process.stop()


def test_health_answers_without_authentication(metered_gateway):
    _, base = metered_gateway
    status, body, content_type = get(base + "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "alive"})
    assert content_type == "application/json"
    status, body, _ = get(base + "/readyz")
    assert status == 200, body
    assert json.loads(body) == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "migrations": "ok"},
    }
    assert get(base + "/nothing")[0] == 404
    import urllib.request

    head = urllib.request.Request(base + "/readyz", method="HEAD")  # noqa: S310 - local
    with urllib.request.urlopen(head, timeout=10) as response:  # noqa: S310 - local
        assert (response.status, response.read()) == (200, b"")


def test_counters_move_by_what_the_sessions_did(metered_gateway, creds):
    port, base = metered_gateway
    before = scrape(base + "/metrics")

    sizes = []
    for _ in range(3):  # three connections, so both processes are likely to take some
        client = smtplib.SMTP("127.0.0.1", port, timeout=20)
        client.ehlo("client.example")
        client.login(creds.access_key, creds.secret)  # CRAM-MD5 (smtplib's first choice)
        for _ in range(2):
            send(client)
            sizes.append(len(MESSAGE))
        client.quit()
    client = smtplib.SMTP("127.0.0.1", port, timeout=20)
    client.ehlo("client.example")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(creds.access_key, "wrong secret")
    client.close()  # no QUIT: disconnected

    after = scrape(base + "/metrics")

    def moved(name, **labels):
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("postmark_smtp_connections_total", result="accepted") == 4
    assert moved("postmark_smtp_sessions_total", result="quit") == 3
    assert moved("postmark_smtp_sessions_total", result="disconnected") == 1
    assert moved("postmark_smtp_auth_total", mechanism="CRAM-MD5", result="success") == 3
    assert moved("postmark_smtp_auth_total", mechanism="CRAM-MD5", result="failure") == 1
    assert moved("postmark_smtp_transactions_total", result="accepted", code="250") == 6
    assert moved("postmark_smtp_accepted_messages_total", endpoint="transactional") == 6
    assert moved("postmark_smtp_accepted_bytes_total") == sum(sizes)
    assert moved("postmark_smtp_commit_batch_size_sum") == 6
    assert moved("postmark_smtp_commit_seconds_count") == moved(
        "postmark_smtp_commit_batch_size_count"
    )
    assert moved("postmark_smtp_commit_batch_size_count") >= 1
    # The gateway's endpoint shows the gateway's metrics only.
    assert all(name.startswith("postmark_smtp_") for name in after.names())


def test_refused_transactions_are_counted_by_reply_code(metered_gateway, creds):
    from servers.models import Server
    from streams.services import get_stream
    from streams.suppressions import suppress

    Server.objects.filter(pk=creds.server.pk).update(strict_smtp=True)
    suppress(get_stream(creds.server, "outbound"), "gone@example.net", "HardBounce", "Recipient")
    port, base = metered_gateway
    before = scrape(base + "/metrics")
    client = smtplib.SMTP("127.0.0.1", port, timeout=20)
    client.ehlo("client.example")
    client.login(creds.access_key, creds.secret)
    client.mail("app@example.com")
    client.rcpt("gone@example.net")
    code, _ = client.data(MESSAGE)
    assert code == 550
    client.quit()
    after = scrape(base + "/metrics")

    def moved(name, **labels):
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("postmark_smtp_transactions_total", result="rejected", code="550") == 1
    assert moved("postmark_smtp_transactions_total", result="accepted") == 0
    # Stored all the same, for its SMTPApiError: processing will count it as failed.
    assert moved("postmark_smtp_accepted_messages_total") == 1


def test_http_address_is_host_and_port():
    from smtpgw.metrics import parse_address

    assert parse_address("127.0.0.1:9025") == ("127.0.0.1", 9025)
    assert parse_address("[::1]:9025") == ("::1", 9025)
    assert parse_address(":9025") == ("127.0.0.1", 9025)
    for wrong in ("9025", "host:", "host:port"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(wrong)


def test_runsmtp_refuses_a_bad_http_address():
    import subprocess

    result = subprocess.run(
        [sys.executable, "manage.py", "runsmtp", "--http", "nowhere"],
        env=subprocess_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--http wants HOST:PORT, not 'nowhere'" in result.stderr


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_busy_http_port_stops_the_gateway_with_a_reason(processes):
    import socket
    import subprocess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "runsmtp", "--processes", processes,
             "--listen", f"transactional=127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{port}"],
            env=subprocess_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot serve health and metrics on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
