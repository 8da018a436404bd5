"""POST /email/bulk and GET /email/bulk/{id} (compat §14) over HTTP: an invalid request is
refused whole with Errors by field and stores nothing; an accepted one is answered at once and
its items, each rendered with its own TemplateModel, go through POST /email's path in the
background task; one bad item fails alone and every item ends counted in the status."""

import json

import pytest
from django.test import Client

from api.bulk import send_bulk
from mailtemplates.models import Template
from messages.models import BulkRequest, OutboundMessage, Submission
from streams.services import get_stream

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


def bulk(**fields):
    base = {
        "From": "app@example.com",
        "Subject": "Hi {{name}}",
        "HtmlBody": "<p>Hello {{name}}</p>",
        "TextBody": "Hello {{name}}",
        "Tag": "news",
        "Metadata": {"campaign": "c1", "who": "all"},
        "Headers": [{"Name": "X-Shared", "Value": "1"}, {"Name": "X-Own", "Value": "shared"}],
        "Messages": [
            {"To": f"user{n}@example.net", "TemplateModel": {"name": f"User {n}"}} for n in range(3)
        ],
    }
    base.update(fields)
    return base


def post(api, body, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post("/email/bulk", data=json.dumps(body), content_type="application/json")
    return response, callbacks


def accepted(api, body, capture) -> str:
    response, callbacks = post(api, body, capture)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert set(answer) == {"ID", "Status", "SubmittedAt"}
    assert answer["Status"] == "Accepted"
    assert len(callbacks) == 1  # the task is queued once the request is committed
    return answer["ID"]


def status(api, bulk_id) -> dict:
    response = api.get(f"/email/bulk/{bulk_id}")
    assert response.status_code == 200, response.content
    return response.json()


def test_each_item_is_rendered_with_its_model_and_sent_like_email(
    api, server, django_capture_on_commit_callbacks
):
    items = bulk()["Messages"]
    items[1]["Metadata"] = {"who": "one"}
    items[1]["Headers"] = [{"Name": "X-Own", "Value": "mine"}]
    bulk_id = accepted(api, bulk(Messages=items), django_capture_on_commit_callbacks)
    before = status(api, bulk_id)
    assert before["Id"] == bulk_id and before["Status"] == "Accepted"
    assert before["TotalMessages"] == 3 and before["PercentageCompleted"] == 0.0
    assert before["Subject"] == "Hi {{name}}"  # the unrendered template

    send_bulk(bulk_id)

    after = status(api, bulk_id)
    assert after["Status"] == "Completed" and after["PercentageCompleted"] == 100.0
    assert (after["ReleasedCount"], after["FailedCount"]) == (3, 0)
    messages = OutboundMessage.objects.order_by("id")
    assert [m.subject for m in messages] == ["Hi User 0", "Hi User 1", "Hi User 2"]
    broadcast = get_stream(server, "broadcast")
    assert {m.stream_id for m in messages} == {broadcast.pk}
    assert {m.tag for m in messages} == {"news"}
    one = messages[1]
    assert one.metadata == {"campaign": "c1", "who": "one"}  # the item's Metadata wins
    raw = bytes(one.content).decode()
    assert "Hello User 1" in raw
    assert "X-Own: mine" in raw and "X-Own: shared" not in raw and "X-Shared: 1" in raw


def test_one_bad_item_fails_alone_and_is_counted(api, django_capture_on_commit_callbacks):
    items = [
        {"To": "good@example.net", "TemplateModel": {"name": "A"}},
        {"To": "not an address", "TemplateModel": {"name": "B"}},
        {"To": "model@example.net", "TemplateModel": "not an object"},
        {"To": "also-good@example.net"},  # no model: the placeholders render empty
    ]
    bulk_id = accepted(api, bulk(Messages=items), django_capture_on_commit_callbacks)
    send_bulk(bulk_id)
    after = status(api, bulk_id)
    assert after["Status"] == "Completed"
    assert (after["ReleasedCount"], after["FailedCount"]) == (2, 2)
    assert [e["Index"] for e in after["Errors"]] == [1, 2]
    assert sorted(OutboundMessage.objects.values_list("subject", flat=True)) == ["Hi", "Hi A"]


def test_a_chunk_sent_again_is_not_sent_twice(api, django_capture_on_commit_callbacks):
    bulk_id = accepted(api, bulk(), django_capture_on_commit_callbacks)
    send_bulk(bulk_id)
    # A worker lost after storing the chunk and before counting it: the task runs again.
    BulkRequest.objects.filter(id=bulk_id).update(
        status="Processing", processed=0, released=0, failed=0
    )
    BulkRequest.objects.filter(id=bulk_id).update(items=bulk()["Messages"])
    send_bulk(bulk_id)
    assert Submission.objects.count() == 3
    assert status(api, bulk_id)["ReleasedCount"] == 3


def test_a_template_is_rendered_per_item(api, server, django_capture_on_commit_callbacks):
    Template.objects.create(
        server=server, name="Welcome", alias="welcome", subject="Welcome {{name}}",
        text_body="Dear {{name}}",
    )  # fmt: skip
    body = bulk(TemplateAlias="welcome")
    for key in ("Subject", "HtmlBody", "TextBody"):
        del body[key]
    bulk_id = accepted(api, body, django_capture_on_commit_callbacks)
    assert status(api, bulk_id)["Subject"] == "Welcome {{name}}"
    send_bulk(bulk_id)
    subjects = sorted(OutboundMessage.objects.values_list("subject", flat=True))
    assert subjects == ["Welcome User 0", "Welcome User 1", "Welcome User 2"]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"From": ""}, "From"),
        ({"Messages": []}, "Messages"),
        ({"Messages": [{"Cc": "a@example.net"}]}, "Messages"),
        ({"Messages": ["x"]}, "Messages"),
        ({"MessageStream": "outbound"}, "MessageStream"),
        ({"MessageStream": "nope"}, "MessageStream"),
        ({"HtmlBody": None, "TextBody": None}, "HtmlBody"),
        ({"TemplateAlias": "missing"}, "Subject"),
    ],
)
def test_an_invalid_request_is_refused_whole(
    api, fields, field, django_capture_on_commit_callbacks
):
    response, callbacks = post(api, bulk(**fields), django_capture_on_commit_callbacks)
    assert response.status_code == 422, response.content
    answer = response.json()
    assert answer["ErrorCode"] == 11
    assert answer["Errors"][field][0]["ErrorCode"] == 11
    assert not callbacks and not BulkRequest.objects.exists()


def test_at_most_the_bulk_cap(api, settings, django_capture_on_commit_callbacks):
    settings.API_MAX_BULK_MESSAGES = 5
    items = [{"To": f"u{n}@example.net"} for n in range(6)]
    response, _ = post(api, bulk(Messages=items), django_capture_on_commit_callbacks)
    assert response.status_code == 422
    assert "at most 5" in response.json()["Errors"]["Messages"][0]["Message"]


def test_ten_thousand_items_fit_the_request_bounds(api, django_capture_on_commit_callbacks):
    items = [
        {"To": f"user{n}@example.net", "TemplateModel": {"name": f"U{n}", "n": n},
         "Metadata": {"k": "v"}}
        for n in range(10_000)
    ]  # fmt: skip
    bulk_id = accepted(api, bulk(Messages=items), django_capture_on_commit_callbacks)
    assert status(api, bulk_id)["TotalMessages"] == 10_000


def test_unknown_or_foreign_ids_are_404(api, django_capture_on_commit_callbacks):
    from streams.services import create_server

    other = create_server("Other")
    bulk_id = accepted(api, bulk(), django_capture_on_commit_callbacks)
    foreign = Client(HTTP_X_POSTMARK_SERVER_TOKEN=other.tokens.first().token)
    for client, path in [
        (foreign, bulk_id),
        (api, "f24af63c-533d-4b7a-ad65-4a7b3202d3a7"),
        (api, "not-a-uuid"),
    ]:
        response = client.get(f"/email/bulk/{path}")
        assert response.status_code == 404
        assert response.json()["ErrorCode"] == 12


def test_the_list_pages_newest_first_with_a_pagination_key(
    api, server, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from streams.services import create_server

    ids = [accepted(api, bulk(), django_capture_on_commit_callbacks) for _ in range(5)]
    start = timezone.now() - timedelta(hours=1)
    for n, bulk_id in enumerate(ids[:4]):  # two share a moment: the id orders them
        BulkRequest.objects.filter(id=bulk_id).update(submitted_at=start + timedelta(minutes=n))
    BulkRequest.objects.filter(id=ids[4]).update(submitted_at=start + timedelta(minutes=3))
    send_bulk(ids[0])
    other = create_server("Other")
    foreign = Client(HTTP_X_POSTMARK_SERVER_TOKEN=other.tokens.first().token)
    assert foreign.get("/email/bulk").json() == {"Requests": []}

    seen, key, pages = [], None, 0
    while True:
        query = "?count=2" + (f"&paginationKey={key}" if key else "")
        response = api.get("/email/bulk" + query)
        assert response.status_code == 200, response.content
        page = response.json()
        pages += 1
        assert 1 <= len(page["Requests"]) <= 2
        seen += page["Requests"]
        key = page.get("PaginationKey")
        if key is None:
            break
    assert pages == 3
    newest_first = sorted(
        BulkRequest.objects.all(), key=lambda b: (b.submitted_at, b.id), reverse=True
    )
    assert [r["Id"] for r in seen] == [str(b.id) for b in newest_first]
    done = next(r for r in seen if r["Id"] == ids[0])
    assert done["Status"] == "Completed" and done["ReleasedCount"] == 3
    assert done["FailedCount"] == 0 and done["TotalMessages"] == 3 and "Errors" not in done
    assert set(api.get("/email/bulk").json()) == {"Requests"}  # 50 a page by default


@pytest.mark.parametrize(
    "query", ["?paginationKey=nonsense", "?paginationKey=bm9uc2Vuc2V8eA", "?count=0",
              "?count=501", "?count=many"]
)  # fmt: skip
def test_a_bad_list_query_is_refused(api, query):
    response = api.get("/email/bulk" + query)
    assert response.status_code == 422, response.content
    assert response.json()["ErrorCode"] == 13
