"""Creating a domain or a sender signature twice at once never fails with a 500: the request that
loses the race (past the existence check when the other one inserted) answers as a duplicate
does, or, where the request only wanted the row to exist, carries on with the winner's.

``racing`` forces the race deterministically on any database: the winner's row is there, but the
loser's existence checks ran before it was. The two-thread test runs the real thing (a race on
PostgreSQL; SQLite serialises the two writers, so there it checks that nothing breaks)."""

import json
import threading

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test import Client
from django.urls import reverse

from domains.models import Domain, SenderSignature
from domains.services import create_sender
from domains.signals import confirmation_requested
from servers.models import AccountToken


def racing(monkeypatch, model, **row):
    """Another request has just inserted ``row`` (committed), but every existence check of this
    request ran before it did and found nothing: its own insert meets the unique index."""
    model.objects.create(**row)
    exists = QuerySet.exists

    def checked_too_early(queryset):
        return False if queryset.model is model else exists(queryset)

    monkeypatch.setattr(QuerySet, "exists", checked_too_early)


@pytest.fixture
def api(db):
    return Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=AccountToken.issue("ops").token)


@pytest.fixture
def requested():
    seen = []

    def receiver(sender, signature, **kwargs):
        seen.append(signature.email)

    confirmation_requested.connect(receiver, weak=False, dispatch_uid="race-requested")
    yield seen
    confirmation_requested.disconnect(dispatch_uid="race-requested")


def _json(response):
    return response.status_code, json.loads(response.content)


def _post(client, path, body):
    return client.post(path, json.dumps(body), "application/json")


# (what, the racing row, the request, what the loser answers)
CASES = [
    ("POST /domains", Domain, {"name": "race.test"},
     lambda c, ids: _post(c, "/domains", {"Name": "race.test"}),
     lambda r: _json(r)[0] == 422 and _json(r)[1]["ErrorCode"] == 512),
    ("POST /senders", SenderSignature, {"email": "me@race.test"},
     lambda c, ids: _post(c, "/senders", {"FromEmail": "Me@race.test", "Name": "Me"}),
     lambda r: _json(r)[0] == 422 and _json(r)[1]["ErrorCode"] == 504),
    ("POST /senders/{id}/requestNewDkim", Domain, {"name": "shop.test"},
     lambda c, ids: _post(c, f"/senders/{ids['signature']}/requestNewDkim", {}),
     lambda r: _json(r)[0] == 200 and _json(r)[1]["Domain"] == "shop.test"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "model", "match", "request_", "loser"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_the_api_request_that_loses_the_race_is_answered(
    api, requested, monkeypatch, what, model, match, request_, loser
):
    from api.views import senders

    ids = {"signature": create_sender("owner@shop.test", name="Owner").pk}
    racing(monkeypatch, model, **match)
    monkeypatch.setattr(senders, "_domain_of", lambda signature: None)  # looked up too early
    response = request_(api, ids)
    assert response.status_code != 500
    assert loser(response), response.content
    assert model.objects.filter(**match).count() == 1
    assert requested == []  # the winner's confirmation message is the only one


ADMIN_CASES = [
    ("domain", Domain, {"name": "race.test"}, "admin:domains_domain_add",
     {"name": "race.test", "return_path_domain": ""}),
    ("sender signature", SenderSignature, {"email": "me@race.test"},
     "admin:domains_sendersignature_add",
     {"email": "Me@race.test", "name": "Me", "reply_to": "", "confirmation_note": ""}),
]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(("what", "model", "match", "url", "form"), ADMIN_CASES,
                         ids=[c[0] for c in ADMIN_CASES])  # fmt: skip
def test_the_admin_form_that_loses_the_race_shows_the_winners_row(
    admin_client, requested, monkeypatch, what, model, match, url, form
):
    racing(monkeypatch, model, **match)
    response = admin_client.post(reverse(url), form, follow=True)
    assert response.status_code == 200
    assert "was added meanwhile" in response.content.decode()
    assert model.objects.filter(**match).count() == 1
    assert requested == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "body", "model", "match", "code"),
    [
        ("/domains", {"Name": "race.test"}, Domain, {"name": "race.test"}, 512),
        (
            "/senders",
            {"FromEmail": "me@race.test", "Name": "Me"},
            SenderSignature,
            {"email": "me@race.test"},
            504,
        ),
    ],  # fmt: skip
    ids=["domain", "sender signature"],
)
def test_two_requests_at_once_make_one_row_and_no_500(path, body, model, match, code):
    token = AccountToken.issue("ops").token
    start = threading.Barrier(2)
    answers = []

    def one_request():
        try:
            start.wait(timeout=10)
            client = Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=token, raise_request_exception=False)
            answers.append(_json(_post(client, path, body)))
        finally:
            connection.close()

    threads = [threading.Thread(target=one_request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 422], answers
    assert [b["ErrorCode"] for s, b in answers if s == 422] == [code]
    assert model.objects.filter(**match).count() == 1
