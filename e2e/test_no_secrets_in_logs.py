"""No secret in any log: every AUTH outcome for every mechanism through a real gateway process,
a message processed by a real Celery worker process, and API requests through Django's stack;
none of the tokens or secrets used may appear in what they log (at DEBUG, the most verbose)."""

import base64
import json
import logging
import smtplib
import time

import pytest
from django.test import Client

from conftest import send, start_gateway, subprocess_env
from messages.models import OutboundMessage
from servers.models import AccountToken
from servers.services import set_smtp_access
from smtpgw.credentials import username_label
from smtpgw.tests.test_gateway import digest_md5
from streams.models import SmtpToken
from streams.services import create_server, create_smtp_token, get_stream

pytestmark = pytest.mark.django_db(transaction=True)

# PLAIN and LOGIN both with and without the initial response on the AUTH line.
MECHANISMS = ("PLAIN", "PLAIN-no-IR", "LOGIN", "LOGIN-IR", "CRAM-MD5", "DIGEST-MD5")
VERBOSE = {"LOG_LEVEL": "DEBUG", "AIOSMTPD_LOG_LEVEL": "DEBUG"}


@pytest.fixture
def verbose_gateway(django_db_setup, tmp_path):
    running = start_gateway(tmp_path / "runsmtp.log", SMTP_AUTH_FAILURE_LIMIT=1000, **VERBOSE)
    yield running
    running.process.stop()


def authenticate(client: smtplib.SMTP, mechanism: str, user: str, password: str) -> int:
    """The reply code of one AUTH exchange with the given mechanism."""
    try:
        if mechanism == "DIGEST-MD5":
            return digest_md5(client, user, password)[0]
        client.user, client.password = user, password
        name = mechanism.split("-")[0] if mechanism != "CRAM-MD5" else mechanism
        method = {
            "PLAIN": client.auth_plain,
            "LOGIN": client.auth_login,
            "CRAM-MD5": client.auth_cram_md5,
        }[name]
        initial = mechanism in ("PLAIN", "LOGIN-IR")
        return client.auth(name, method, initial_response_ok=initial)[0]
    except smtplib.SMTPAuthenticationError as error:
        return error.smtp_code


def forbidden_strings(secrets: list[str], logins: list[tuple[str, str]]) -> list[str]:
    """Each secret, a long prefix of it, and the base64 forms that crossed the wire."""
    found = []
    for secret in secrets:
        found += [secret, secret[:12], base64.b64encode(secret.encode()).decode()]
    for user, password in logins:
        blob = f"\0{user}\0{password}".encode()
        found.append(base64.b64encode(blob).decode())
    return found


def assert_nothing_secret(text: str, forbidden: list[str], where: str) -> None:
    for secret in forbidden:
        assert secret not in text, f"{secret!r} appears in the {where} log"


def test_no_auth_outcome_logs_a_secret(verbose_gateway, start_process):
    server = create_server("Secrets in logs")
    server_token = server.api_tokens[0]
    smtp_token, smtp_secret = create_smtp_token(get_stream(server, "outbound"))
    account_token = AccountToken.issue().token
    wrong = "wrong-secret-" + "x" * 20
    worker = start_process(
        ["-m", "celery", "-A", "postmark_site", "worker", "-l", "debug", "--pool", "threads"],
        env=subprocess_env(CELERY_BROKER_URL="", LOG_LEVEL="DEBUG"),
        name="worker",
    )
    worker.wait_for("ready", timeout=60)

    logins = []

    def expect(mechanism, user, password, code):
        logins.append((user, password))
        client = verbose_gateway.smtp()
        assert authenticate(client, mechanism, user, password) == code, (mechanism, user)
        return client

    message_ids = []
    for mechanism in MECHANISMS:
        client = expect(mechanism, server_token, server_token, 235)  # success, server token
        message_ids.append(send(client))
        client.quit()
        client = expect(mechanism, smtp_token.access_key, smtp_secret, 235)  # success, SMTP token
        client.quit()
        expect(mechanism, server_token, wrong, 535).close()  # wrong secret, server token
        expect(mechanism, smtp_token.access_key, wrong, 535).close()  # wrong secret, SMTP token
        expect(mechanism, wrong, wrong, 535).close()  # unknown user name
        expect(mechanism, account_token, account_token, 535).close()  # account token

    SmtpToken.objects.get(pk=smtp_token.pk).revoke()
    set_smtp_access(server, False)
    for mechanism in MECHANISMS:
        expect(mechanism, smtp_token.access_key, smtp_secret, 535).close()  # revoked token
        expect(mechanism, server_token, server_token, 535).close()  # SMTP switched off

    deadline = time.monotonic() + 60
    while OutboundMessage.objects.filter(message_id__in=message_ids).count() < len(message_ids):
        assert time.monotonic() < deadline, "the worker did not process the messages"
        time.sleep(0.2)
    time.sleep(0.5)  # let the worker write its last lines

    forbidden = forbidden_strings([server_token, smtp_secret, account_token, wrong], logins)
    gateway_log = verbose_gateway.process.output()
    assert_nothing_secret(gateway_log, forbidden, "gateway")
    assert_nothing_secret(worker.output(), forbidden, "worker")
    # The refusals are logged, under a label that identifies without revealing.
    assert f"for {username_label(server_token)} refused" in gateway_log
    assert f"for {username_label(account_token)} refused" in gateway_log
    assert "auth=server_token:" + username_label(server_token) in gateway_log


def test_usernames_are_logged_as_labels():
    token = "0123456789abcdef0123456789abcdef0123"
    assert username_label(token) == "…0123"
    assert username_label("short") == "(5 characters)"
    assert "abc" not in username_label("abcdefghijklmno")


def test_the_web_app_logs_no_token(caplog):
    server = create_server("API secrets in logs")
    server_token = server.api_tokens[0]
    account_token = AccountToken.issue().token
    bogus = "0f0e0d0c-0b0a-0908-0706-050403020100"
    payload = json.dumps({"Suppressions": [{"EmailAddress": "user@example.net"}]})
    caplog.set_level(logging.DEBUG)
    statuses = []
    for header, token in [
        ("HTTP_X_POSTMARK_SERVER_TOKEN", server_token),
        ("HTTP_X_POSTMARK_SERVER_TOKEN", bogus),
        ("HTTP_X_POSTMARK_SERVER_TOKEN", account_token),
        ("HTTP_X_POSTMARK_ACCOUNT_TOKEN", account_token),
        ("HTTP_X_POSTMARK_ACCOUNT_TOKEN", server_token),
    ]:
        client = Client(HTTP_ACCEPT="application/json", **{header: token})
        for path in ("/bounces", "/deliverystats", "/webhooks", "/bounces/123"):
            statuses.append(client.get(path).status_code)
        for body in (payload, "{not json"):
            response = client.post(
                "/message-streams/outbound/suppressions", body, content_type="application/json"
            )
            statuses.append(response.status_code)
    assert 200 in statuses and 401 in statuses
    text = caplog.text + "\n".join(
        f"{record.getMessage()} {record.args!r} {getattr(record, 'request', '')!r}"
        for record in caplog.records
    )
    assert caplog.records, "the requests were expected to log something (4xx warnings)"
    assert_nothing_secret(text, forbidden_strings([server_token, account_token, bogus], []), "web")
