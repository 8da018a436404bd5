"""HTTP sends log one line per message as the gateway does per SMTP transaction (logger
``api.send``): /email, /email/batch, /email/withTemplate and each item of /email/bulk, with the
MessageID of each accepted message on its line and in its log context; and every request gets
an access line (``postmark_site.access``)."""

import json
import logging

import pytest
from django.test import Client

from api.bulk import send_bulk
from messages.models import BulkRequest, Submission

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


def message(**fields):
    return {"From": "app@example.com", "To": "user@example.net", "Subject": "Hi",
            "TextBody": "Hello", **fields}  # fmt: skip


def post(api, path, body):
    return api.post(path, data=json.dumps(body), content_type="application/json")


def send_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "api.send"]


def assert_accepted_line(record, server, message_id: str) -> None:
    text = record.getMessage()
    assert f"queued as {message_id}" in text
    assert f"server={server.pk} stream=outbound from=<app@example.com> rcpts=1" in text
    assert text.startswith("client=127.0.0.1 endpoint=api ")
    assert (record.MessageID, record.server, record.stream) == (message_id, str(server.pk),
                                                                "outbound")  # fmt: skip


def test_email_logs_an_accept_line_with_the_message_id(api, server, caplog):
    caplog.set_level(logging.INFO)
    answer = post(api, "/email", message()).json()
    [line] = send_lines(caplog)
    assert_accepted_line(line, server, answer["MessageID"])


def test_a_refused_message_logs_its_error_without_a_message_id(api, server, caplog):
    caplog.set_level(logging.INFO)
    response = post(api, "/email", message(MessageStream="nowhere"))
    assert response.json()["ErrorCode"] == 1235
    [line] = send_lines(caplog)
    assert 'result="1235 The stream' in line.getMessage() and "stream=-" in line.getMessage()
    assert not hasattr(line, "MessageID")


def test_batch_logs_one_line_per_message(api, server, caplog):
    caplog.set_level(logging.INFO)
    answers = post(api, "/email/batch", [message(), message(To="b@example.net")]).json()
    lines = send_lines(caplog)
    assert [r.MessageID for r in lines] == [a["MessageID"] for a in answers]


def test_with_template_logs_an_accept_line(api, server, caplog):
    from mailtemplates.models import Template

    Template.objects.create(server=server, name="Welcome", alias="welcome", subject="Hi {{n}}",
                            text_body="Hello {{n}}")  # fmt: skip
    caplog.set_level(logging.INFO)
    body = {"From": "app@example.com", "To": "user@example.net", "TemplateAlias": "welcome",
            "TemplateModel": {"n": "Ann"}}  # fmt: skip
    answer = post(api, "/email/withTemplate", body).json()
    assert answer["ErrorCode"] == 0, answer
    [line] = send_lines(caplog)
    assert_accepted_line(line, server, answer["MessageID"])


def test_bulk_items_log_an_accept_line_each(
    api, server, caplog, django_capture_on_commit_callbacks
):
    body = {"From": "app@example.com", "Subject": "Hi {{name}}", "TextBody": "Hello {{name}}",
            "Messages": [{"To": f"u{n}@example.net", "TemplateModel": {"name": "x"}}
                         for n in range(2)]}  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False):
        response = post(api, "/email/bulk", body)
    assert response.status_code == 200, response.content
    caplog.set_level(logging.INFO)
    send_bulk(BulkRequest.objects.get().id)
    lines = send_lines(caplog)
    ids = set(Submission.objects.values_list("message_id", flat=True))
    assert {r.MessageID for r in lines} == {str(i) for i in ids} and len(lines) == 2


def test_every_request_gets_an_access_line(api, caplog):
    caplog.set_level(logging.INFO)
    post(api, "/email", message())
    Client().get("/senders/confirm/secret-token-value?x=user@example.net")
    lines = [r for r in caplog.records if r.name == "postmark_site.access"]
    assert [(r.method, r.path, r.status) for r in lines] == [
        ("POST", "/email", 200),
        ("GET", "/senders/confirm/…", 400),
    ]
    assert all(isinstance(r.ms, float) and r.bytes > 0 for r in lines)
    shown = " ".join(r.getMessage() for r in lines)
    assert "secret-token-value" not in shown and "user@example.net" not in shown
