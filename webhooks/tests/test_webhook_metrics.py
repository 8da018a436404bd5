"""Webhook posts are counted by the receiver's status, and the backlog gauge reads the database."""

import pytest

from conftest import free_port
from webhooks import deliveries
from webhooks.metrics import POSTS, backlog
from webhooks.tests.test_webhooks import (
    _delivery,
    _make_due,
    private_ok,  # noqa: F401 - fixture
    queued,  # noqa: F401 - fixture
    receiver,  # noqa: F401 - fixture
)

pytestmark = pytest.mark.django_db


def count(status: str) -> float:
    return POSTS.labels(status)._value.get()


def test_posts_are_counted_by_status(server, receiver, private_ok, queued):  # noqa: F811
    before = {s: count(s) for s in ("200", "500", "error")}
    receiver.status = [500, 200]
    delivery = _delivery(server, receiver.url)
    assert backlog()["webhook_deliveries_pending"]["count"] == 1
    assert deliveries.deliver(delivery.pk, 0) == "pending"
    _make_due(delivery.pk)
    assert deliveries.deliver(delivery.pk, 1) == "delivered"
    assert count("500") - before["500"] == 1
    assert count("200") - before["200"] == 1
    assert count("error") == before["error"]
    assert backlog()["webhook_deliveries_pending"] == {
        "count": 0, "oldest": None, "oldest_age_seconds": 0.0
    }  # fmt: skip


def test_no_answer_is_counted_as_error(server, private_ok, queued):  # noqa: F811
    before = count("error")
    delivery = _delivery(server, f"http://127.0.0.1:{free_port()}/closed")
    assert deliveries.deliver(delivery.pk, 0) == "pending"
    assert count("error") - before == 1
