"""The dispatcher's list of streams with webhooks: no query for an event of a stream without
one, and a webhook added in this process is seen at once."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messages.events import record_event
from webhooks.fanout import forget_webhook_streams, streams_with_webhooks
from webhooks.models import Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_event_of_a_stream_without_webhooks_costs_no_query(server):
    stream = server.streams.get(stream_id="outbound")
    forget_webhook_streams()  # not what an earlier test's rolled-back rows left (ids are reused)
    streams_with_webhooks()  # warm
    with CaptureQueriesContext(connection) as queries:
        record_event(server_id=server.pk, stream_id=stream.pk, type="Delivery", recipient="a@x.io")
    assert not [q["sql"] for q in queries if "SELECT" in q["sql"]]


def test_a_webhook_added_in_this_process_is_posted_to_at_once(server, settings):
    settings.WEBHOOK_STREAMS_CACHE_SECONDS = 3600
    stream = server.streams.get(stream_id="outbound")
    assert stream.pk not in streams_with_webhooks()
    Webhook.objects.create(stream=stream, url="https://hooks.example.com/in", delivery_enabled=True)
    assert stream.pk in streams_with_webhooks()
    record_event(server_id=server.pk, stream_id=stream.pk, type="Delivery", recipient="a@x.io")
    assert WebhookDelivery.objects.count() == 1
