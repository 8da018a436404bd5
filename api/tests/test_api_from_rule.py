"""The From rule over the HTTP send API, against the hostile corpus
(domains/tests/from_corpus.py): POST /email answers 422 with ErrorCode 300 (Invalid 'From'
address) or 400 (not a sender signature) and stores nothing, or sends the honest forms; a batch
answers each item by the same rule; the message sent has exactly the one From that was judged."""

import email
import email.policy
import json

import pytest
from django.test import Client

from bounces.models import Bounce
from domains.tests.from_corpus import ABSENT, HTTP_CASES, refused_sender, verify_corpus_domains
from messages.models import OutboundMessage, Submission

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(server):
    verify_corpus_domains()
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


def item(from_value) -> dict:
    body = {"To": "ann@example.net", "Subject": "Hostile From", "TextBody": "Hello."}
    if from_value is not ABSENT:
        body["From"] = from_value
    return body


def post(api, path, body):
    return api.post(path, data=json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.name for c in HTTP_CASES])
def test_the_hostile_corpus_over_email(api, case):
    response = post(api, "/email", item(case.http_from))
    answer = response.json()
    if case.http_code == 0:
        assert (response.status_code, answer["ErrorCode"]) == (200, 0), answer
        [sent] = OutboundMessage.objects.all()
        parsed = email.message_from_bytes(bytes(sent.content), policy=email.policy.default)
        assert len(parsed.get_all("From")) == 1
        return
    assert (response.status_code, answer["ErrorCode"]) == (422, case.http_code), answer
    if case.http_code == 300:
        assert answer["Message"].startswith("Invalid 'From' address: '"), answer
    else:
        assert answer["Message"] == refused_sender(case.http_named)
    assert not (Submission.objects.exists() or OutboundMessage.objects.exists())
    assert not Bounce.objects.exists()


def test_a_batch_answers_each_from_by_the_rule(api):
    values = [
        "Shop <me@example.com>",
        "=?us-ascii?q?me=40example=2Ecom?= <ceo@bank.test>",
        "me@example.com, ceo@bank.test",
        "Staff: me@example.com;",
        "Shop",
    ]
    response = post(api, "/email/batch", [item(v) for v in values])
    assert response.status_code == 200
    assert [a["ErrorCode"] for a in response.json()] == [0, 400, 300, 300, 300]
    assert response.json()[1]["Message"] == refused_sender("ceo@bank.test")
    assert OutboundMessage.objects.get().from_email == "me@example.com"


def test_a_custom_from_header_adds_no_second_from(api):
    body = item("me@example.com")
    body["Headers"] = [{"Name": "From", "Value": "ceo@bank.test"},
                       {"Name": "FROM", "Value": "ceo@bank.test"}]  # fmt: skip
    assert post(api, "/email", body).json()["ErrorCode"] == 0
    content = bytes(OutboundMessage.objects.get().content)
    assert b"ceo@bank.test" not in content
    assert content.lower().count(b"\r\nfrom:") + content.lower().startswith(b"from:") == 1


def test_an_encoded_display_name_is_sent_with_the_judged_address(api):
    answer = post(api, "/email", item("Café René <me@example.com>")).json()
    assert answer["ErrorCode"] == 0
    sent = OutboundMessage.objects.get()
    parsed = email.message_from_bytes(bytes(sent.content), policy=email.policy.default)
    [address] = parsed["From"].addresses
    assert (address.display_name, address.addr_spec) == ("Café René", "me@example.com")
    assert sent.from_email == "me@example.com"
