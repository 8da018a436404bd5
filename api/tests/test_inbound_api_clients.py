"""The inbound Messages API and the inbound rule triggers driven by Postmark's real clients over
real HTTP (live_server), unmodified but for their base URL: postmarker, Postmark's official
Python SDK (postmark-python, whose pydantic models check every field) and postmark.js."""

import uuid

import postmarker.core
import postmarker.exceptions
import pytest

from api.tests.test_inbound_api import PDF, make_inbound, token_of
from inbound.models import InboundMessage, InboundRule

S = InboundMessage.Status
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def postmarker_client(live_server, server):
    return postmarker.core.PostmarkClient(
        server_token=token_of(server), root_api_url=live_server.url + "/"
    )


def test_postmarker_messages_inbound(postmarker_client, server, other_server):
    processed = make_inbound(server, subject="Processed one")
    blocked = make_inbound(server, status=S.BLOCKED, sender="spam@example.com")
    failed = make_inbound(server, status=S.FAILED)
    make_inbound(other_server)
    inbound = postmarker_client.messages.inbound
    listed = inbound.all(count=10)
    assert {m.MessageID for m in listed} == {
        str(processed.message_id), str(blocked.message_id), str(failed.message_id)
    }  # fmt: skip
    [only] = inbound.all(count=10, status="blocked", fromemail="spam@example.com")
    assert only.MessageID == str(blocked.message_id) and only.Status == "Blocked"
    details = inbound.get(str(processed.message_id))
    assert details.Subject == "Processed one"
    assert details["X-Ticket"] == "7"  # its headers, as postmarker reads them
    assert [a.Name for a in details.Attachments] == ["invoice.pdf", "logo.png"]
    assert details.Attachments[0].decoded == b"%PDF-1.4\n"
    mime = details.as_mime()  # needs TextBody, HtmlBody, Headers and the attachments' content
    assert mime["Subject"] == "Processed one"
    assert only.bypass()["Message"] == f"Successfully bypassed message: {blocked.message_id}."
    answer = inbound.retry(str(failed.message_id))
    assert answer == {
        "ErrorCode": 0,
        "Message": f"Successfully rescheduled failed message: {failed.message_id}.",
    }
    with pytest.raises(postmarker.exceptions.ClientError) as caught:
        inbound.retry(str(processed.message_id))
    assert caught.value.error_code == 701
    with pytest.raises(postmarker.exceptions.ClientError) as caught:
        inbound.get(str(uuid.uuid4()))
    assert caught.value.error_code == 701


def test_postmarker_inbound_rules(postmarker_client, server):
    rules = postmarker_client.triggers.inboundrules
    made = rules.create("Someone@Example.com")
    assert made.Rule == "someone@example.com" and isinstance(made.ID, int)
    rules.create("example.org")
    assert [r.Rule for r in rules.all()] == ["someone@example.com", "example.org"]
    with pytest.raises(postmarker.exceptions.ClientError) as caught:
        rules.create("example.org")
    assert caught.value.error_code == 810
    with pytest.raises(postmarker.exceptions.ClientError) as caught:
        rules.create("not valid")
    assert caught.value.error_code == 813
    assert made.delete() == "Rule someone@example.com removed."
    assert [r.Rule for r in rules.all()] == ["example.org"]
    with pytest.raises(postmarker.exceptions.ClientError) as caught:
        rules.delete(made.ID)
    assert caught.value.error_code == 812
    # Tag triggers, which Postmark discontinued: a clear error, not a crash.
    with pytest.raises(postmarker.exceptions.ClientError) as caught:
        postmarker_client.triggers.tags.all()
    assert "discontinued" in str(caught.value)


def test_postmark_python_inbound_and_rules(live_server, server, settings):
    sync = pytest.importorskip("postmark.sync")
    # The SDK refuses addresses at special-use names such as the default inbound.localhost.
    settings.INBOUND_DOMAIN = "inbound.example.com"
    processed = make_inbound(server, subject="For the SDK")
    blocked = make_inbound(server, status=S.BLOCKED)
    failed = make_inbound(server, status=S.FAILED)
    with sync.ServerClient(token_of(server), retries=0, base_url=live_server.url) as sdk:
        page = sdk.inbound.list(count=10, mailbox_hash="T-42")
        assert page.total == 3
        assert {m.message_id for m in page.items} == {
            str(processed.message_id), str(blocked.message_id), str(failed.message_id)
        }  # fmt: skip
        [found] = sdk.inbound.list(count=10, subject="for the sdk").items
        assert found.from_full.email == "ann@example.com" and found.status == "Processed"
        assert found.attachments[0].content_length == 9
        details = sdk.inbound.get(str(processed.message_id))
        assert details.text_body.startswith("Thanks!") and details.headers[0].name
        assert details.blocked_reason == ""
        assert sdk.inbound.bypass(str(blocked.message_id)).error_code == 0
        assert sdk.inbound.retry(str(failed.message_id)).message == (
            f"Successfully rescheduled failed message: {failed.message_id}."
        )
        rule = sdk.inbound_rules.create("blocked.example")
        assert rule.rule == "blocked.example"
        listed = sdk.inbound_rules.list(count=10)
        assert listed.total == 1 and listed.items[0].id == rule.id
        assert sdk.inbound_rules.delete(rule.id).message == "Rule blocked.example removed."
    assert not InboundRule.objects.exists()


def test_postmark_js_inbound_and_rules(live_server, postmark_js, server):
    url, token = live_server.url, token_of(server)
    processed = make_inbound(server, subject="For postmark.js")
    blocked = make_inbound(server, status=S.BLOCKED)
    failed = make_inbound(server, status=S.FAILED)
    query = {"count": 5, "offset": 0, "status": "sent", "mailboxHash": "T-42"}
    listed = postmark_js(url, "Server", token, "getInboundMessages", query)
    assert listed["ok"], listed
    assert listed["result"]["TotalCount"] == 1
    assert listed["result"]["InboundMessages"][0]["MessageID"] == str(processed.message_id)
    details = postmark_js(url, "Server", token, "getInboundMessageDetails",
                          str(processed.message_id))  # fmt: skip
    assert details["ok"], details
    assert details["result"]["Attachments"][0]["Content"] == PDF
    missing = postmark_js(url, "Server", token, "getInboundMessageDetails", str(uuid.uuid4()))
    assert missing["ok"] is False and missing["code"] == 701 and missing["statusCode"] == 422
    bypassed = postmark_js(url, "Server", token, "bypassBlockedInboundMessage",
                           str(blocked.message_id))  # fmt: skip
    assert bypassed["result"]["Message"] == f"Successfully bypassed message: {blocked.message_id}."
    again = postmark_js(url, "Server", token, "bypassBlockedInboundMessage",
                        str(blocked.message_id))  # fmt: skip
    assert again["ok"] is False and again["code"] == 701
    retried = postmark_js(url, "Server", token, "retryInboundHookForMessage",
                          str(failed.message_id))  # fmt: skip
    assert retried["ok"] and retried["result"]["ErrorCode"] == 0
    created = postmark_js(url, "Server", token, "createInboundRuleTrigger",
                          {"Rule": "someone@example.com"})  # fmt: skip
    assert created["ok"], created
    rule_id = created["result"]["ID"]
    duplicate = postmark_js(url, "Server", token, "createInboundRuleTrigger",
                            {"Rule": "someone@example.com"})  # fmt: skip
    assert duplicate["ok"] is False and duplicate["code"] == 810
    rules = postmark_js(url, "Server", token, "getInboundRuleTriggers")
    assert rules["result"] == {
        "TotalCount": 1, "InboundRules": [{"Rule": "someone@example.com", "ID": rule_id}]
    }  # fmt: skip
    deleted = postmark_js(url, "Server", token, "deleteInboundRuleTrigger", rule_id)
    assert deleted["result"] == {"ErrorCode": 0, "Message": "Rule someone@example.com removed."}
    gone = postmark_js(url, "Server", token, "deleteInboundRuleTrigger", rule_id)
    assert gone["ok"] is False and gone["code"] == 812
