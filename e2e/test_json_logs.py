"""LOG_FORMAT=json: one JSON object per line from the gateway and the worker, with the MessageID,
server and stream on every line about a message."""

import json
import re
import sys

import pytest

from conftest import send, start_gateway, subprocess_env, wait_for
from delivery.tests.sinks import SmtpSink
from messages.models import Recipient
from servers.models import DeliveryType

pytestmark = pytest.mark.django_db(transaction=True)

# The text formats: the settings' "2026-01-01 12:00:00,000 INFO ..." and Celery's "[2026-...".
TEXT_RECORD = re.compile(r"^\[?\d{4}-\d\d-\d\d[ T]\d\d:")


def json_lines(text: str) -> list[dict]:
    """The log records of a process's output, each a JSON object on one line. (A Celery worker
    also prints its start banner and Python warnings, which are not log records.)"""
    records = []
    for line in text.splitlines():
        assert not TEXT_RECORD.match(line), f"a log record in text: {line!r}"
        if line.startswith("{"):
            records.append(json.loads(line))
    assert records
    return records


def test_gateway_and_worker_write_json_about_each_message(creds, start_process, tmp_path):
    creds.server.delivery_type = DeliveryType.LIVE
    creds.server.save()
    gateway = start_gateway(tmp_path / "runsmtp.log", LOG_FORMAT="json")
    with SmtpSink() as sink:
        worker = start_process(
            [sys.executable, "-m", "celery", "-A", "postmark_site", "worker", "-l", "info",
             "--pool", "threads"],
            env=subprocess_env(
                CELERY_BROKER_URL="", LOG_FORMAT="json",
                OUTBOUND_SMTP_RELAY=f"smtp://127.0.0.1:{sink.port}?starttls=never",
            ),
            name="worker",
        )  # fmt: skip
        worker.wait_for("ready", timeout=60)
        client = gateway.smtp()
        client.login(creds.access_key, creds.secret)
        message_id = send(client, rcpts=["ok@example.net"])
        client.quit()
        wait_for(
            lambda: Recipient.objects.filter(status=Recipient.Status.DELIVERED).exists(),
            what="delivery",
        )
        wait_for(lambda: "delivered to ok@example.net" in worker.output(), what="the log line")
    gateway.process.stop()
    worker.stop()
    about = {"MessageID": message_id, "server": str(creds.server.pk), "stream": "outbound"}

    gateway_records = json_lines(gateway.process.output())
    assert {"time", "level", "logger", "message"} <= set(gateway_records[0])
    transaction = [r for r in gateway_records if r["logger"] == "smtpgw.transaction"]
    assert len(transaction) == 1
    assert {k: transaction[0].get(k) for k in about} == about
    assert "queued as " + message_id in transaction[0]["message"]

    worker_records = json_lines(worker.output())
    about_this = [r for r in worker_records if message_id == r.get("MessageID")]
    messages = [r["message"] for r in about_this]
    assert "processed: processed" in messages
    assert any(m.startswith("delivered to ok@example.net: 250") for m in messages)
    for record in about_this:
        assert {k: record.get(k) for k in about} == about
    # Lines about nothing in particular carry no message fields.
    assert any("MessageID" not in r for r in worker_records)


def test_text_stays_the_default(creds, tmp_path):
    gateway = start_gateway(tmp_path / "runsmtp.log")
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    send(client)
    client.quit()
    gateway.process.stop()
    lines = gateway.process.output().splitlines()
    assert any(" INFO smtpgw.transaction client=127.0.0.1 " in line for line in lines)
    assert not any(line.startswith("{") for line in lines)


def test_the_web_app_under_gunicorn_writes_json(start_process):
    from conftest import free_port
    from smtpgw.tests.metrics_scrape import get

    port = free_port()
    web = start_process(
        ["-m", "gunicorn", "postmark_site.wsgi:application", "--config",
         "postmark_site/gunicorn.py", "--bind", f"127.0.0.1:{port}"],
        env=subprocess_env(LOG_FORMAT="json"), name="gunicorn",
    )  # fmt: skip
    web.wait_for("Booting worker")
    wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, what="gunicorn")
    assert get(f"http://127.0.0.1:{port}/o/no-such-page")[0] == 404
    wait_for(lambda: "no-such-page" in web.output(), what="the log line")
    web.stop()
    records = json_lines(web.output())
    booting = [r for r in records if "Booting worker" in r["message"]]
    assert booting and booting[0]["logger"] == "gunicorn.error"
    [not_found] = [
        r for r in records if "no-such-page" in r["message"] and r["logger"] == "django.request"
    ]
    assert (not_found["logger"], not_found["level"]) == ("django.request", "WARNING")


def test_gunicorn_writes_json_access_and_send_lines(start_process):
    import urllib.request

    from conftest import free_port
    from smtpgw.tests.metrics_scrape import get
    from streams.services import create_server

    server = create_server("JSON logs")
    port = free_port()
    web = start_process(
        ["-m", "gunicorn", "postmark_site.wsgi:application", "--config",
         "postmark_site/gunicorn.py", "--bind", f"127.0.0.1:{port}"],
        env=subprocess_env(LOG_FORMAT="json"), name="gunicorn",
    )  # fmt: skip
    web.wait_for("Booting worker")

    def healthy() -> bool:
        try:  # a worker imports the app on its first request: slow on a busy machine
            return get(f"http://127.0.0.1:{port}/healthz", timeout=60)[0] == 200
        except OSError:
            return False

    wait_for(healthy, what="gunicorn")
    body = json.dumps({"From": "app@example.com", "To": "user@example.net", "Subject": "Hi",
                       "TextBody": "Hello"}).encode()  # fmt: skip
    request = urllib.request.Request(  # noqa: S310 - a local URL
        f"http://127.0.0.1:{port}/email", data=body,
        headers={"X-Postmark-Server-Token": server.api_tokens[0],
                 "Content-Type": "application/json", "User-Agent": "json-logs-test"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        message_id = json.loads(response.read())["MessageID"]
    wait_for(lambda: "json-logs-test" in web.output(), what="the access line")
    web.stop()
    records = json_lines(web.output())
    [sent] = [r for r in records if r["logger"] == "api.send"]
    assert sent["MessageID"] == message_id and sent["server"] == str(server.pk)
    assert f"queued as {message_id}" in sent["message"]
    access = [r for r in records if r["logger"] == "postmark_site.access"]
    healthz = [r for r in access if r["path"] == "/healthz"]
    [email] = [r for r in access if r["path"] == "/email"]
    assert healthz and healthz[0]["status"] == 200 and healthz[0]["method"] == "GET"
    assert (email["method"], email["status"], email["user_agent"]) == (
        "POST",
        200,
        "json-logs-test",
    )
    assert email["ms"] >= 0 and email["bytes"] > 0 and email["client"] == "127.0.0.1"
