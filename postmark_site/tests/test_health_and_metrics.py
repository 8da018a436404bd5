"""The web app's /healthz, /readyz and /metrics over real HTTP (live_server)."""

import json

import pytest
from django.core.management import call_command

from conftest import accepted_submission, free_port
from smtpgw.tests.metrics_scrape import get, scrape

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_and_readyz_need_no_token(live_server):
    status, body, content_type = get(live_server.url + "/healthz")
    assert (status, json.loads(body), content_type) == (
        200,
        {"status": "alive"},
        "application/json",
    )
    status, body, _ = get(live_server.url + "/readyz")
    assert status == 200, body
    assert json.loads(body)["checks"] == {"database": "ok", "broker": "ok", "migrations": "ok"}
    # Not the API's routes: no normalising, so no Postmark-shaped 401 for a missing token.
    status, body, _ = get(live_server.url + "/readyz/")
    assert status == 404


def test_readyz_names_an_unreachable_broker(live_server, settings):
    settings.EMBEDDED_BROKER = False
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.HEALTH_CHECK_TIMEOUT = 1
    status, body, content_type = get(live_server.url + "/readyz")
    assert status == 503
    assert content_type == "application/json"
    answer = json.loads(body)
    assert answer["status"] == "unavailable"
    assert answer["failed"] == ["broker"]
    assert answer["checks"]["database"] == "ok"
    assert "Error" in answer["checks"]["broker"]


def test_readyz_names_migrations_not_applied(live_server):
    call_command("migrate", "smtpgw", "zero", verbosity=0)
    try:
        status, body, _ = get(live_server.url + "/readyz")
        assert status == 503
        answer = json.loads(body)
        assert answer["failed"] == ["migrations"]
        assert answer["checks"]["migrations"] == (
            "1 migration(s) not applied: smtpgw.0001_auth_failure_count"
        )
    finally:
        call_command("migrate", "smtpgw", verbosity=0)
    assert get(live_server.url + "/readyz")[0] == 200


def test_queue_gauges_are_read_from_the_database(live_server, server):
    before = scrape(live_server.url + "/metrics")
    assert before.value("postmark_queue_submissions_waiting") == 0
    for _ in range(3):
        accepted_submission(server, rcpts=["a@example.net"])
    after = scrape(live_server.url + "/metrics")
    assert after.value("postmark_queue_submissions_waiting") == 3
    assert after.value("postmark_queue_submissions_waiting_oldest_age_seconds") >= 0
    assert after.value("postmark_queue_recipients_deferred") == 0
    assert after.value("postmark_queue_webhook_deliveries_pending") == 0
    # The gateway's families are on the gateway's own endpoint, not here.
    assert not [name for name in after.names() if name.startswith("postmark_smtp_")]
