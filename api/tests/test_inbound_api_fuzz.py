"""Property-based tests of the inbound endpoints (``/messages/inbound…``, ``/triggers/
inboundrules``): whatever a client sends — any id, query or body — the answer is never a 500, and
every error is Postmark's ``{"ErrorCode", "Message"}`` with HTTP 4xx. The same values and settings
as test_api_fuzz.py (``make fuzz`` runs many more examples)."""

import logging

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from api.tests.test_api_fuzz import (
    bodies,
    dates,
    fuzz,
    integers_as_text,
    path_segment,
    queries,
    send,
    texts,
)
from api.tests.test_inbound_api import make_inbound
from inbound.models import InboundMessage, InboundRule
from inbound.queries import STATUSES

pytestmark = pytest.mark.fuzz
S = InboundMessage.Status


@pytest.fixture
def world(server, other_server, monkeypatch):
    """A message in every state, a foreign one, and rules of both servers."""
    monkeypatch.setattr(logging.getLogger("django.request"), "level", logging.ERROR)
    mine = [make_inbound(server, status=status) for status in S.values]
    foreign = make_inbound(other_server, status=S.BLOCKED)
    rules = [
        InboundRule.objects.create(server=server, rule="blocked.example"),
        InboundRule.objects.create(server=other_server, rule="other.example"),
    ]
    return {
        "client": Client(raise_request_exception=True),
        "token": server.tokens.first().token,
        "message_ids": [str(m.message_id) for m in [*mine, foreign]],
        "rule_ids": [str(r.pk) for r in rules],
    }


def ids(world, kind: str):
    return st.one_of(st.sampled_from(world[kind]), integers_as_text, texts)


INBOUND_QUERY = {
    "count": integers_as_text,
    "offset": integers_as_text,
    "recipient": texts,
    "fromemail": st.one_of(st.just("ann@example.com"), texts),
    "tag": texts,
    "subject": texts,
    "mailboxhash": st.one_of(st.just("T-42"), texts),
    "status": st.one_of(st.sampled_from(STATUSES), texts),
    "fromdate": dates,
    "todate": dates,
}


@pytest.mark.django_db
@fuzz(150)
@given(data=st.data())
def test_inbound_list_never_fails(world, data):
    query = data.draw(queries(INBOUND_QUERY), label="query")
    if data.draw(st.integers(0, 3), label="page") and "count=" not in query.lower():
        query += "&count=50&offset=0"
    send(world, "GET", f"/messages/inbound?{query}")


@pytest.mark.django_db
@fuzz(150)
@given(data=st.data())
def test_inbound_message_by_id_never_fails(world, data):
    message_id = data.draw(ids(world, "message_ids"), label="id")
    suffix, method = data.draw(
        st.sampled_from([("details", "GET"), ("bypass", "PUT"), ("retry", "PUT")]), label="endpoint"
    )
    body = data.draw(bodies({"x": texts}), label="body")
    send(world, method, f"/messages/inbound/{path_segment(message_id)}/{suffix}", body)


@pytest.mark.django_db
@fuzz(150)
@given(data=st.data())
def test_inbound_rules_never_fail(world, data):
    kind = data.draw(st.sampled_from(["list", "create", "delete"]), label="kind")
    if kind == "list":
        query = data.draw(queries({"count": integers_as_text, "offset": integers_as_text}))
        send(world, "GET", f"/triggers/inboundrules?{query}")
    elif kind == "create":
        rule = st.one_of(st.sampled_from(["a@b.example", "b.example", "blocked.example"]), texts)
        send(world, "POST", "/triggers/inboundrules", data.draw(bodies({"Rule": rule})))
    else:
        rule_id = data.draw(ids(world, "rule_ids"), label="id")
        send(world, "DELETE", f"/triggers/inboundrules/{path_segment(rule_id)}")
