"""The Sender Signatures API (compat §8) with an account token: fields in Postmark's names (the
DNS ones from the address's domain), the confirmation request on create and resend, every error
with Postmark's code; and the whole API through postmark.js's AccountClient and postmarker."""

import json

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from postmarker.core import PostmarkClient
from postmarker.exceptions import ClientError

from domains import verification
from domains.models import DkimKey, Domain, SenderSignature
from domains.services import confirm_sender, create_domain, create_sender
from domains.signals import confirmation_requested
from servers.models import AccountToken

JSON = "application/json; charset=utf-8"

SUMMARY_FIELDS = ["Domain", "EmailAddress", "ReplyToEmailAddress", "Name", "Confirmed", "ID"]
DETAIL_FIELDS = [
    "Domain", "EmailAddress", "ReplyToEmailAddress", "Name", "Confirmed", "SPFVerified",
    "SPFHost", "SPFTextValue", "DKIMVerified", "WeakDKIM", "DKIMHost", "DKIMTextValue",
    "DKIMPendingHost", "DKIMPendingTextValue", "DKIMRevokedHost", "DKIMRevokedTextValue",
    "SafeToRemoveRevokedKeyFromDNS", "DKIMUpdateStatus", "ReturnPathDomain",
    "ReturnPathDomainVerified", "ReturnPathDomainCNAMEValue", "ID", "ConfirmationPersonalNote",
    "DKIMEd25519Host", "DKIMEd25519TextValue", "DKIMEd25519PendingHost",
    "DKIMEd25519PendingTextValue",
]  # fmt: skip


@pytest.fixture
def account_token(db):
    return AccountToken.issue("ops").token


@pytest.fixture
def api(account_token):
    return Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=account_token)


@pytest.fixture
def requested():
    """The signatures whose confirmation message was asked for, in order."""
    seen = []

    def receiver(sender, signature, **kwargs):
        seen.append(signature.email)

    confirmation_requested.connect(receiver, weak=False)
    yield seen
    confirmation_requested.disconnect(receiver)


def ok(response) -> dict:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == JSON
    return json.loads(response.content)


def error(response, status: int, code: int) -> str:
    assert response.status_code == status, response.content
    body = json.loads(response.content)
    assert set(body) == {"ErrorCode", "Message"} and body["ErrorCode"] == code, body
    assert body["Message"]
    return body["Message"]


def post(api, path, body=None):
    return api.post(path, json.dumps(body) if body is not None else "", "application/json")


def put(api, path, body=None):
    return api.put(path, json.dumps(body) if body is not None else "", "application/json")


NEW = {
    "FromEmail": "Orders@Shop.Test",
    "Name": "Shop orders",
    "ReplyToEmail": "help@shop.test",
    "ReturnPathDomain": "pm.shop.test",
    "ConfirmationPersonalNote": "Please confirm: we send receipts from here.",
}


# --- create and read ------------------------------------------------------------------------------


def test_create_asks_for_the_confirmation_once_committed(
    api, requested, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        body = ok(post(api, "/senders", NEW))
    assert list(body) == DETAIL_FIELDS
    signature = SenderSignature.objects.get()
    assert requested == ["orders@shop.test"]
    assert body["ID"] == signature.pk and body["EmailAddress"] == "orders@shop.test"
    assert body["Domain"] == "shop.test" and body["Name"] == "Shop orders"
    assert body["ReplyToEmailAddress"] == "help@shop.test" and body["Confirmed"] is False
    assert body["ReturnPathDomain"] == "pm.shop.test"
    assert body["ConfirmationPersonalNote"] == NEW["ConfirmationPersonalNote"]
    assert body["ReturnPathDomainCNAMEValue"] == settings.BOUNCE_DOMAIN
    # As Postmark: shop.test gets its first DKIM key, pending until its record is published.
    pending = Domain.objects.get(name="shop.test").key("pending")
    assert body["DKIMHost"] == "" and not body["DKIMVerified"]
    assert body["DKIMPendingHost"] == pending.host and pending.host.endswith(
        "._domainkey.shop.test"
    )
    assert body["DKIMPendingTextValue"] == pending.text_value
    assert body["DKIMUpdateStatus"] == "Pending"
    assert body["SPFHost"] == "shop.test" and "include:" in body["SPFTextValue"]
    assert ok(api.get(f"/senders/{signature.pk}")) == body


def test_a_signature_shows_the_dkim_records_of_its_domain(api):
    domain = create_domain("shop.test", "bounces.shop.test")
    pending = domain.key("pending")
    signature = create_sender("orders@shop.test", name="Orders")
    body = ok(api.get(f"/senders/{signature.pk}"))
    assert body["DKIMPendingHost"] == pending.host
    assert body["DKIMPendingTextValue"] == pending.text_value
    assert body["DKIMUpdateStatus"] == "Pending"
    assert body["ReturnPathDomain"] == "bounces.shop.test"  # the domain's, none of its own
    assert body["ReturnPathDomainVerified"] is False
    DkimKey.objects.filter(pk=pending.pk).update(state="active", activated_at=timezone.now())
    Domain.objects.filter(pk=domain.pk).update(dkim_verified=True, return_path_verified=True)
    body = ok(api.get(f"/senders/{signature.pk}"))
    assert body["DKIMHost"] == pending.host and body["DKIMVerified"] is True
    assert body["DKIMUpdateStatus"] == "Verified" and body["ReturnPathDomainVerified"] is True


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 520), ({"FromEmail": "a@shop.test"}, 520), ({"Name": "A"}, 520),
        ({"FromEmail": "", "Name": "A"}, 520), ({"FromEmail": None, "Name": "A"}, 520),
        ({"FromEmail": "a@shop.test", "Name": "   "}, 520),
        ({"FromEmail": "not an address", "Name": "A"}, 522),
        ({"FromEmail": "a@no-dot", "Name": "A"}, 522),
        ({"FromEmail": "a@shop.test", "Name": 5}, 522),
        ({"FromEmail": ["a@shop.test"], "Name": "A"}, 522),
        ({"FromEmail": "a@shop.test", "Name": "A\r\nBcc: x@evil.test"}, 522),
        ({"FromEmail": "a\x01b@shop.test", "Name": "A"}, 522),
        ({"FromEmail": "a@shop.test\x00", "Name": "A"}, 522),
        ({"FromEmail": "a@shop.test", "Name": "A", "ReplyToEmail": "nope"}, 522),
        ({"FromEmail": "a@shop.test", "Name": "A", "ReturnPathDomain": "pm.elsewhere.test"},
         522),
        ({"FromEmail": "a@shop.test", "Name": "A" * 256}, 521),
        ({"FromEmail": "a" * 320 + "@shop.test", "Name": "A"}, 521),
        ({"FromEmail": "a@shop.test", "Name": "A", "ConfirmationPersonalNote": "n" * 401}, 521),
    ],
)  # fmt: skip
def test_bad_signatures_are_refused_with_postmarks_codes(api, requested, body, code):
    error(post(api, "/senders", body), 422, code)
    assert not SenderSignature.objects.exists() and requested == []


def test_a_signature_exists_once(api):
    ok(post(api, "/senders", NEW))
    again = post(api, "/senders", dict(NEW, FromEmail="ORDERS@shop.test"))
    assert "already exists" in error(again, 422, 504)


def test_a_personal_note_may_have_several_lines(api):
    body = ok(post(api, "/senders", dict(NEW, ConfirmationPersonalNote="Hi,\r\nplease click.")))
    assert body["ConfirmationPersonalNote"] == "Hi,\r\nplease click."


# --- list -----------------------------------------------------------------------------------------


def test_the_list_pages_with_count_and_offset(api):
    for i in range(4):
        create_sender(f"s{i}@shop.test", name=f"S{i}", reply_to="r@shop.test")
    body = ok(api.get("/senders?count=2&offset=1"))
    assert body["TotalCount"] == 4
    assert [s["EmailAddress"] for s in body["SenderSignatures"]] == [
        "s1@shop.test",
        "s2@shop.test",
    ]
    first = body["SenderSignatures"][0]
    assert list(first) == SUMMARY_FIELDS
    assert first["ReplyToEmailAddress"] == "r@shop.test" and first["Domain"] == "shop.test"
    assert ok(api.get("/Senders/?COUNT=500&Offset=0"))["TotalCount"] == 4


@pytest.mark.parametrize(
    "query",
    ["", "count=1", "offset=0", "count=0&offset=0", "count=501&offset=0", "count=1&offset=x",
     "count=1&offset=-5", "count=9999&offset=9999", "count=%ED%A0%80&offset=0"],
)  # fmt: skip
def test_bad_pages_are_query_errors(api, query):
    error(api.get(f"/senders?{query}"), 422, 500)


# --- edit and delete ------------------------------------------------------------------------------


def test_edit_changes_the_fields_given(api):
    signature = create_sender("a@shop.test", name="A", reply_to="r@shop.test", note="n")
    body = ok(put(api, f"/senders/{signature.pk}", {"Name": "Anne", "ReplyToEmail": None}))
    assert body["Name"] == "Anne" and body["ReplyToEmailAddress"] == "r@shop.test"
    body = ok(
        put(api, f"/senders/{signature.pk}",
            {"name": "Anne", "replytoemail": "", "ReturnPathDomain": "pm.shop.test",
             "ConfirmationPersonalNote": "new", "FromEmail": "other@elsewhere.test"})
    )  # fmt: skip
    assert body["ReplyToEmailAddress"] == "" and body["ReturnPathDomain"] == "pm.shop.test"
    assert body["ConfirmationPersonalNote"] == "new"
    assert body["EmailAddress"] == "a@shop.test"  # what was confirmed never changes
    signature.refresh_from_db()
    assert (signature.name, signature.reply_to) == ("Anne", "")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (None, 502), ({}, 502), ({"Name": None}, 502), ({"FromEmail": "x@shop.test"}, 502),
        ({"Name": ""}, 520), ({"Name": "A", "ReplyToEmail": "bad"}, 522),
        ({"Name": "A", "ReturnPathDomain": "pm.elsewhere.test"}, 522),
        ({"Name": "A" * 300}, 521), ({"Name": True}, 522),
    ],
)  # fmt: skip
def test_bad_edits_are_refused(api, body, code):
    signature = create_sender("a@shop.test", name="A")
    error(put(api, f"/senders/{signature.pk}", body), 422, code)
    signature.refresh_from_db()
    assert signature.name == "A" and signature.reply_to == ""


def test_delete_removes_the_signature(api):
    signature = create_sender("a@shop.test", name="A")
    assert ok(api.delete(f"/senders/{signature.pk}")) == {
        "ErrorCode": 0,
        "Message": "Signature a@shop.test removed.",
    }
    assert not SenderSignature.objects.exists()
    error(api.delete(f"/senders/{signature.pk}"), 404, 501)


@pytest.mark.parametrize("sender_id", ["424242", "x", "-1", "9" * 25, "%00"])
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("put", ""), ("delete", ""), ("post", "/resend"), ("post", "/verifySpf"),
     ("post", "/requestNewDkim")],
)  # fmt: skip
def test_unknown_signatures_are_404_with_code_501(api, sender_id, method, suffix):
    error(getattr(api, method)(f"/senders/{sender_id}{suffix}"), 404, 501)


# --- resend, SPF, DKIM ----------------------------------------------------------------------------


def test_resend_asks_again_until_confirmed(api, requested, django_capture_on_commit_callbacks):
    signature = create_sender("a@shop.test", name="A")
    with django_capture_on_commit_callbacks(execute=True):
        body = ok(post(api, f"/senders/{signature.pk}/resend"))
    assert body == {
        "ErrorCode": 0,
        "Message": "Confirmation email for Sender Signature a@shop.test was re-sent.",
    }
    assert requested == ["a@shop.test"]
    confirm_sender(signature)
    with django_capture_on_commit_callbacks(execute=True):
        error(post(api, f"/Senders/{signature.pk}/Resend/"), 422, 506)
    assert requested == ["a@shop.test"]


def test_verify_spf_checks_the_domain_of_the_address(api, monkeypatch):
    checked = []

    def dns_says_yes(domain):
        checked.append(domain.name)
        Domain.objects.filter(pk=domain.pk).update(spf_verified=True)
        return True

    monkeypatch.setattr(verification, "verify_spf", dns_says_yes)
    signature = create_sender("a@shop.test", name="A")
    body = ok(post(api, f"/senders/{signature.pk}/verifySpf"))  # no domain: nothing to check
    assert body["SPFVerified"] is False and checked == []
    create_domain("shop.test")
    body = ok(post(api, f"/senders/{signature.pk}/verifyspf"))
    assert body["SPFVerified"] is True and checked == ["shop.test"]


def test_request_new_dkim_makes_the_domain_key_then_rotates_it(api):
    signature = create_sender("a@shop.test", name="A")
    body = ok(post(api, f"/senders/{signature.pk}/requestNewDkim"))
    domain = Domain.objects.get(name="shop.test")
    first = domain.key("pending")
    assert body["DKIMPendingHost"] == first.host and body["DKIMUpdateStatus"] == "Pending"
    # Until the first key's record is seen there is nothing to renew.
    error(post(api, f"/senders/{signature.pk}/requestnewdkim"), 422, 505)
    DkimKey.objects.filter(pk=first.pk).update(state="active", activated_at=timezone.now())
    body = ok(post(api, f"/senders/{signature.pk}/requestNewDkim"))
    assert body["DKIMHost"] == first.host
    assert body["DKIMPendingHost"] and body["DKIMPendingHost"] != first.host


def test_a_server_token_cannot_manage_signatures(server):
    signature = create_sender("a@shop.test", name="A")
    client = Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)
    for response in (
        client.get("/senders?count=1&offset=0"),
        client.post("/senders", NEW, "application/json"),
        client.delete(f"/senders/{signature.pk}"),
        client.post(f"/senders/{signature.pk}/resend"),
    ):
        assert "Account API token" in error(response, 401, 10)
    assert SenderSignature.objects.count() == 1


# --- Postmark's clients over HTTP -----------------------------------------------------------------


def _activate_first_key(name: str) -> None:
    """The first key's record seen: it signs."""
    pending = Domain.objects.get(name=name).key("pending")
    DkimKey.objects.filter(pk=pending.pk).update(state="active", activated_at=timezone.now())


def test_postmark_js_account_client_manages_signatures(
    live_server, postmark_js, account_token, requested
):
    def call(method, *args):
        return postmark_js(live_server.url, "Account", account_token, method, *args)

    created = call("createSenderSignature", {
        "Name": "JS", "FromEmail": "js@shop.test", "ReplyToEmail": "help@shop.test",
        "ConfirmationPersonalNote": "hello",
    })  # fmt: skip
    assert created["ok"], created
    signature = created["result"]
    assert signature["EmailAddress"] == "js@shop.test" and signature["Confirmed"] is False
    assert requested == ["js@shop.test"]
    sender_id = signature["ID"]

    listed = call("getSenderSignatures", {"count": 10, "offset": 0})["result"]
    assert listed["TotalCount"] == 1 and listed["SenderSignatures"][0]["ID"] == sender_id
    assert call("getSenderSignatures")["result"]["TotalCount"] == 1
    assert call("getSenderSignature", sender_id)["result"] == signature

    edited = call("editSenderSignature", sender_id, {"Name": "JS 2", "ReplyToEmail": ""})
    assert edited["result"]["Name"] == "JS 2" and edited["result"]["ReplyToEmailAddress"] == ""

    resent = call("resendSenderSignatureConfirmation", sender_id)["result"]
    assert resent["ErrorCode"] == 0 and requested == ["js@shop.test", "js@shop.test"]
    spf = call("verifySenderSignatureSPF", sender_id)
    assert spf["ok"] and spf["result"]["ID"] == sender_id
    # The new signature's domain key is pending (as in Postmark): once its record is seen,
    # a new key can be requested.
    assert signature["DKIMPendingHost"].endswith("._domainkey.shop.test")
    _activate_first_key("shop.test")
    dkim = call("requestNewDKIMForSenderSignature", sender_id)["result"]
    assert dkim["DKIMPendingHost"].endswith("._domainkey.shop.test")

    duplicate = call("createSenderSignature", {"Name": "JS", "FromEmail": "JS@shop.test"})
    assert duplicate["ok"] is False and duplicate["code"] == 504
    invalid = call("createSenderSignature", {"Name": "JS", "FromEmail": "nope"})
    assert invalid["ok"] is False and invalid["code"] == 522 and invalid["statusCode"] == 422

    confirm_sender(SenderSignature.objects.get(pk=sender_id))
    already = call("resendSenderSignatureConfirmation", sender_id)
    assert already["ok"] is False and already["code"] == 506
    assert call("deleteSenderSignature", sender_id)["result"]["Message"] == (
        "Signature js@shop.test removed."
    )
    missing = call("getSenderSignature", sender_id)
    assert missing["ok"] is False and missing["code"] == 501 and missing["statusCode"] == 404


def test_postmarker_manages_signatures(live_server, account_token, requested):
    client = PostmarkClient(
        server_token="unused", account_token=account_token, root_api_url=live_server.url
    )
    signature = client.senders.create("Py@Shop.Test", "Py", ReplyToEmail="r@shop.test")
    assert (
        signature.EmailAddress == "py@shop.test" and signature.ReplyToEmailAddress == "r@shop.test"
    )
    assert requested == ["py@shop.test"]
    assert [s.EmailAddress for s in client.senders.all()] == ["py@shop.test"]
    assert client.senders.get(signature.ID).Name == "Py"

    signature.edit(Name="Py 2", ReturnPathDomain="pm.shop.test")
    assert signature.Name == "Py 2" and signature.ReturnPathDomain == "pm.shop.test"
    assert signature.get().ReplyToEmailAddress == "r@shop.test"  # null: unchanged
    assert "re-sent" in signature.resend()
    assert signature.verifyspf()["ID"] == signature.ID
    first = signature.DKIMPendingHost  # the new signature's domain key, pending (as in Postmark)
    assert first.endswith("._domainkey.shop.test")
    _activate_first_key("shop.test")
    with pytest.warns(DeprecationWarning):
        assert signature.requestnewdkim()["DKIMPendingHost"] not in ("", first)

    with pytest.raises(ClientError) as duplicate:
        client.senders.create("py@shop.test", "Again")
    assert duplicate.value.error_code == 504
    assert signature.delete() == "Signature py@shop.test removed."
    with pytest.raises(ClientError) as missing:
        signature.get()
    assert missing.value.error_code == 501


def test_a_duplicate_created_concurrently_is_still_504(api, monkeypatch, requested):
    """Two requests for one address both pass the existence check; the unique index refuses
    the second, which answers as the check would have and asks for no confirmation."""
    from domains import services

    create_sender(NEW["FromEmail"])  # the winner's, committed after the loser's check
    monkeypatch.setattr(services, "_sender_exists", lambda address: False)
    error(post(api, "/senders", NEW), 422, 504)
    assert requested == []


# --- how often confirmation messages go out ------------------------------------------------------


ELSE = {"Name": "Someone", "ConfirmationPersonalNote": "Hello"}


def _mails_to(address: str) -> int:
    from messages.models import Submission

    return Submission.objects.filter(rcpt_to=[address]).count()


def _an_hour_later(hours: float = 1.0):
    from datetime import timedelta

    from django.db.models import F

    from domains.models import ConfirmationSent

    ConfirmationSent.objects.update(sent_at=F("sent_at") - timedelta(hours=hours, seconds=1))


def limited(response, address_or_account: str) -> str:
    message = error(response, 429, 429)
    assert address_or_account in message and "Try again in" in message
    assert 0 < int(response["Retry-After"]) <= 24 * 3600
    return message


def test_resends_to_one_address_are_limited(api, settings):
    """31 resends with a 400-character note reached a victim in 0.8 s: now three a day."""
    settings.SENDER_CONFIRMATIONS_PER_ADDRESS_PER_DAY = 3
    body = dict(ELSE, FromEmail="victim@else.test", ConfirmationPersonalNote="x" * 400)
    signature_id = ok(post(api, "/senders", body))["ID"]
    answers = [post(api, f"/senders/{signature_id}/resend") for _ in range(30)]
    assert [r.status_code for r in answers[:2]] == [200, 200]
    for response in answers[2:]:
        limited(response, "victim@else.test")
    assert _mails_to("victim@else.test") == 3
    # Deleting the signature and adding it again counts on.
    ok(api.delete(f"/senders/{signature_id}"))
    limited(post(api, "/senders", body), "victim@else.test")
    assert not SenderSignature.objects.filter(email="victim@else.test").exists()
    # A day later it may go again.
    _an_hour_later(hours=24)
    ok(post(api, "/senders", body))
    assert _mails_to("victim@else.test") == 4


def test_confirmations_from_the_account_are_limited(api, settings):
    settings.SENDER_CONFIRMATIONS_PER_HOUR = 5
    for i in range(5):
        ok(post(api, "/senders", dict(ELSE, FromEmail=f"s{i}@else.test")))
    limited(post(api, "/senders", dict(ELSE, FromEmail="s5@else.test")), "this account")
    signature = SenderSignature.objects.get(email="s0@else.test")
    assert "this account" in limited(post(api, f"/senders/{signature.pk}/resend"), "account")
    assert not SenderSignature.objects.filter(email="s5@else.test").exists()
    # Signatures an operator vouches for need no message: they are not limited.
    create_sender("vouched@else.test", confirmed=True)
    _an_hour_later()
    ok(post(api, "/senders", dict(ELSE, FromEmail="s5@else.test")))
    assert ok(post(api, f"/senders/{signature.pk}/resend"))["ErrorCode"] == 0


def test_no_limit_when_set_to_zero(api, settings):
    settings.SENDER_CONFIRMATIONS_PER_ADDRESS_PER_DAY = 0
    settings.SENDER_CONFIRMATIONS_PER_HOUR = 0
    signature_id = ok(post(api, "/senders", NEW))["ID"]
    for _ in range(5):
        ok(post(api, f"/senders/{signature_id}/resend"))
    assert _mails_to("orders@shop.test") == 6


@pytest.mark.django_db(transaction=True)
def test_resends_at_once_are_limited_too(settings):
    import threading

    from django.db import connection

    settings.SENDER_CONFIRMATIONS_PER_ADDRESS_PER_DAY = 3
    token = AccountToken.issue("ops").token
    signature = create_sender("victim@else.test", name="V")
    start = threading.Barrier(10)
    statuses = []

    def resend():
        try:
            start.wait(timeout=10)
            client = Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=token, raise_request_exception=False)
            statuses.append(post(client, f"/senders/{signature.pk}/resend").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=resend) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200] * 3 + [429] * 7
    assert _mails_to("victim@else.test") == 3
