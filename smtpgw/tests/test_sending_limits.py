"""Per-server sending limits (abuse control): 451 4.7.1 at MAIL over the limit, through real SMTP
sessions and gateway processes; the rule itself as a plain function; the admin page's figures."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import BOUNCE_DOMAIN, accepted_submission, send, start_gateway
from messages import limits
from streams.services import create_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_figures():
    limits.clear_cache()
    yield
    limits.clear_cache()


def limited_server(name: str, per_minute: int | None = None, per_day: int | None = None):
    server = create_server(name)
    server.smtp_messages_per_minute = per_minute
    server.smtp_messages_per_day = per_day
    server.save()
    return server


def logged_in(gateway, server):
    client = gateway.smtp()
    token = server.api_tokens[0]
    client.login(token, token)
    return client


def test_the_fourth_message_in_a_minute_gets_451(gateway):
    server = limited_server("Three per minute", per_minute=3)
    other = create_server("Unlimited neighbour")
    client = logged_in(gateway, server)
    for _ in range(3):
        send(client)
    code, reply = client.mail("app@example.com")
    assert code == 451
    assert reply.startswith(b"4.7.1 ")
    assert b"per minute" in reply
    code, _ = client.rcpt("user@example.net")
    assert code == 503  # no transaction: the client retries the whole message later
    client.rset()
    client.quit()
    neighbour = logged_in(gateway, other)
    for _ in range(5):
        send(neighbour)
    neighbour.quit()


def test_off_by_default(gateway):
    server = create_server("No limits")
    assert (server.smtp_messages_per_minute, server.smtp_messages_per_day) == (None, None)
    client = logged_in(gateway, server)
    for _ in range(6):
        send(client)
    client.quit()


def test_the_daily_limit_counts_the_last_24_hours(gateway):
    server = limited_server("Two per day", per_day=2)
    accepted_submission(server, received_at=timezone.now() - timedelta(hours=23))
    accepted_submission(server, received_at=timezone.now() - timedelta(hours=25))  # too old
    client = logged_in(gateway, server)
    send(client)
    code, reply = client.mail("app@example.com")
    assert (code, reply[:6]) == (451, b"4.7.1 ")
    assert b"per day" in reply
    client.quit()


def test_the_count_holds_across_gateway_processes(gateway, tmp_path):
    """What one process accepted counts in another: the figures come from the database."""
    server = limited_server("Shared limit", per_minute=2)
    client = logged_in(gateway, server)
    send(client)
    send(client)
    client.quit()
    second = start_gateway(tmp_path / "second.log")
    try:
        client = logged_in(second, server)
        code, reply = client.mail("app@example.com")
        assert (code, reply[:6]) == (451, b"4.7.1 ")
        client.quit()
    finally:
        second.process.stop()


def test_the_rule_as_a_plain_function(settings):
    settings.SMTP_SENDING_LIMIT_CACHE_SECONDS = 0
    server = limited_server("Plain rule", per_minute=2, per_day=3)
    other = create_server("Plain neighbour")
    assert limits.sending_limit_refusal(other.pk) == ""
    accepted_submission(server, received_at=timezone.now() - timedelta(minutes=5))
    accepted_submission(server)
    assert limits.sending_limit_refusal(server.pk) == ""
    accepted_submission(server)
    assert "per minute" in limits.sending_limit_refusal(server.pk)
    use = limits.sending_use(server.pk)
    assert (use.last_minute, use.last_day) == (2, 3)
    server.smtp_messages_per_minute = 0
    server.save()
    assert "per day" in limits.sending_limit_refusal(server.pk)
    server.smtp_messages_per_day = None
    server.save()
    assert limits.sending_limit_refusal(server.pk) == ""
    assert limits.sending_limit_refusal(other.pk) == ""


def test_the_cache_counts_what_this_process_lets_through(settings, django_assert_num_queries):
    settings.SMTP_SENDING_LIMIT_CACHE_SECONDS = 60
    server = limited_server("Cached rule", per_minute=3)
    with django_assert_num_queries(2):  # the limits, then one COUNT for the minute
        refusals = [limits.sending_limit_refusal(server.pk) for _ in range(5)]
    assert refusals[:3] == ["", "", ""]
    assert all(r.startswith("451 4.7.1 ") for r in refusals[3:])
    unlimited = create_server("Cached, no limits")
    assert limits.cached_refusal(unlimited.pk) is None  # not read yet: the gateway asks a thread
    assert limits.sending_limit_refusal(unlimited.pk) == ""
    with django_assert_num_queries(0):
        assert limits.cached_refusal(unlimited.pk) == ""  # on the event loop, no query


def test_the_admin_page_shows_limits_and_use(admin_client):
    server = limited_server("Admin limits", per_minute=5, per_day=100)
    accepted_submission(server)
    accepted_submission(server, received_at=timezone.now() - timedelta(hours=2))
    page = admin_client.get(f"/admin/servers/server/{server.pk}/change/").content.decode()
    assert 'id="sending-limits"' in page
    assert "last minute <strong>1</strong>\n      / 5" in page
    assert "last 24 hours <strong>2</strong>\n      / 100" in page
    assert 'name="smtp_messages_per_minute"' in page
    assert 'name="smtp_messages_per_day"' in page
    unlimited = create_server("Admin no limits")
    page = admin_client.get(f"/admin/servers/server/{unlimited.pk}/change/").content.decode()
    assert 'id="sending-limit-off"' in page


# --- one limit for SMTP and the HTTP API; the bounce MX is not sending (issue 22) -----------------


def test_smtp_and_the_http_api_share_the_limits(gateway):
    import json

    from django.test import Client

    server = limited_server("Two per minute, any channel", per_minute=2)
    api = Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.api_tokens[0])
    message = {"From": "app@example.com", "To": "user@example.net", "TextBody": "x"}

    def post():
        return api.post("/email", json.dumps(message), content_type="application/json")

    assert post().status_code == 200
    client = logged_in(gateway, server)
    send(client)  # the gateway reads the figures now: one message over HTTP
    limits.clear_cache()  # this process's figures are read again too: one message each way
    refused = post()
    assert (refused.status_code, refused.json()["ErrorCode"]) == (429, 429)
    code, reply = client.mail("app@example.com")
    assert (code, reply[:6]) == (451, b"4.7.1 ")
    client.quit()


def test_reports_to_the_bounce_mx_do_not_count(gateway, settings):
    """(Before issue 22 one DSN exhausted a per-minute limit of 1.)"""
    import smtplib

    from smtpgw.tests.test_bounce_mx import report_for, sent_message, verp

    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN
    server = limited_server("One per minute", per_minute=1)
    original = sent_message(server, ["john.doe@example.org"])
    mx = smtplib.SMTP("127.0.0.1", gateway.bounce_port, timeout=10)
    mx.sendmail("", [verp(original)], report_for("postfix_user_unknown.eml", original))
    mx.quit()
    assert limits.sending_use(server.pk).last_minute == 0
    client = logged_in(gateway, server)
    send(client)  # 250: the report was not this server's sending
    code, _ = client.mail("app@example.com")
    assert code == 451
    client.quit()
