"""Property-based tests of the account endpoints (domains, sender signatures): whatever a client
sends — any id, query, body or token — the answer is never a 500, and every error is Postmark's
``{"ErrorCode", "Message"}`` with HTTP 4xx. The same values and settings as test_api_fuzz.py
(``make fuzz`` runs many more examples)."""

import logging

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from api.tests.test_api_fuzz import (
    assert_postmark_answer,
    bodies,
    fuzz,
    integers_as_text,
    json_values,
    path_segment,
    queries,
    texts,
)
from domains import verification
from domains.models import DkimKey, Domain
from domains.services import create_domain, create_sender
from servers.models import AccountToken

pytestmark = pytest.mark.fuzz


@pytest.fixture
def world(server, monkeypatch):
    """A verified domain being rotated, a new one, a confirmed and an unconfirmed signature;
    DNS checks that never leave the machine."""
    for check in ("verify_dkim", "verify_return_path", "verify_spf"):
        monkeypatch.setattr(verification, check, lambda domain: False)
    monkeypatch.setattr(logging.getLogger("django.request"), "level", logging.ERROR)
    verified = create_domain("shop.test", "pm.shop.test", ed25519=True)
    DkimKey.objects.filter(domain=verified).update(state="active")
    Domain.objects.filter(pk=verified.pk).update(dkim_verified=True)
    DkimKey.generate(verified)
    fresh = create_domain("new.test")
    confirmed = create_sender("a@shop.test", name="A", confirmed=True)
    unconfirmed = create_sender("b@other.test", name="B", reply_to="r@other.test")
    return {
        "client": Client(raise_request_exception=True),
        "token": AccountToken.issue("fuzz").token,
        "server_token": server.tokens.first().token,
        "domain_ids": [str(verified.pk), str(fresh.pk)],
        "sender_ids": [str(confirmed.pk), str(unconfirmed.pk)],
    }


def send(world, method: str, path: str, body: bytes | None = None, token=True):
    headers = {}
    if token is True:
        headers["X-Postmark-Account-Token"] = world["token"]
    elif token == "server":
        headers["X-Postmark-Server-Token"] = world["server_token"]
    elif token is not None:
        headers["X-Postmark-Account-Token"] = token
    with transaction.atomic():
        response = world["client"].generic(
            method, "http://testserver" + path, data=body or b"",
            content_type="application/json", headers=headers,
        )  # fmt: skip
        transaction.set_rollback(True)
    assert_postmark_answer(response, method, path)
    return response


def ids(world, kind: str):
    return st.one_of(st.sampled_from(world[kind]), integers_as_text, texts)


PAGE = {"count": integers_as_text, "offset": integers_as_text}
hosts = st.one_of(
    st.sampled_from(["shop.test", "SHOP.TEST.", "pm.shop.test", "bücher.test", "x.shop.test"]),
    texts,
    json_values,
)
addresses = st.one_of(
    st.sampled_from(["a@shop.test", "new@shop.test", "x@bücher.test", "a@b", "@", "a@"]),
    st.emails(),
    texts,
    json_values,
)
DOMAIN_FIELDS = {"Name": hosts, "ReturnPathDomain": hosts}
SENDER_FIELDS = {
    "FromEmail": addresses,
    "Name": st.one_of(texts, json_values),
    "ReplyToEmail": addresses,
    "ReturnPathDomain": hosts,
    "ConfirmationPersonalNote": st.one_of(texts, json_values),
}


@pytest.mark.django_db
@fuzz(60)
@given(data=st.data())
def test_lists_never_fail(world, data):
    path = data.draw(st.sampled_from(["/domains", "/senders", "/Domains/", "/SENDERS"]))
    query = data.draw(queries(PAGE), label="query")
    if data.draw(st.integers(0, 3), label="page") and "count=" not in query.lower():
        query = "count=10&offset=0&" + query
    send(world, "GET", f"{path}?{query}")


@pytest.mark.django_db
@fuzz(80)
@given(data=st.data())
def test_creating_never_fails(world, data):
    path, fields = data.draw(
        st.sampled_from([("/domains", DOMAIN_FIELDS), ("/senders", SENDER_FIELDS)]), label="what"
    )
    send(world, "POST", path, data.draw(bodies(fields), label="body"))


@pytest.mark.django_db
@fuzz(120)
@given(data=st.data())
def test_one_domain_never_fails(world, data):
    domain_id = data.draw(ids(world, "domain_ids"), label="id")
    method, suffix = data.draw(
        st.sampled_from([("GET", ""), ("PUT", ""), ("DELETE", ""), ("PUT", "/verifyDKIM"),
                         ("PUT", "/verifyReturnPath"), ("POST", "/verifySPF"),
                         ("POST", "/rotateDKIM"), ("POST", ""), ("PATCH", "/rotatedkim")]),
        label="endpoint",
    )  # fmt: skip
    body = data.draw(bodies(DOMAIN_FIELDS), label="body")
    token = data.draw(st.sampled_from([True, True, True, None, "server", "bogus"]), label="token")
    send(world, method, f"/domains/{path_segment(domain_id)}{suffix}", body, token=token)


@pytest.mark.django_db
@fuzz(120)
@given(data=st.data())
def test_one_signature_never_fails(world, data):
    sender_id = data.draw(ids(world, "sender_ids"), label="id")
    method, suffix = data.draw(
        st.sampled_from([("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/resend"),
                         ("POST", "/verifySpf"), ("POST", "/requestNewDkim"), ("GET", "/resend")]),
        label="endpoint",
    )  # fmt: skip
    body = data.draw(bodies(SENDER_FIELDS), label="body")
    token = data.draw(st.sampled_from([True, True, True, None, "server", "bogus"]), label="token")
    send(world, method, f"/senders/{path_segment(sender_id)}{suffix}", body, token=token)
