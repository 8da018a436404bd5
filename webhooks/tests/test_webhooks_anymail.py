"""A third-party Postmark webhook parser (django-anymail's tracking webhook) reads the exact bodies
this service posts: a bounce as "bounced", a delivery as "delivered"."""

import base64

import pytest
from anymail.signals import tracking
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from django.test import Client, override_settings
from django.urls import path

from messages.events import record_bounce_event, record_message_event
from streams.services import get_stream
from webhooks import fanout, guard
from webhooks.tests.test_webhooks import (  # noqa: F401 - fixtures
    all_triggers,
    bounce,
    drain,
    outbound,
    private_ok,
    queued,
    receiver,
)

urlpatterns = [
    path(
        "anymail/postmark/tracking/",
        PostmarkTrackingWebhookView.as_view(),
        name="postmark_tracking_webhook",
    )
]


def parse_with_anymail(request):
    """POST the exact bytes and headers the receiver got to anymail's view; its events."""
    events = []

    def handler(sender, event, esp_name, **kwargs):
        events.append(event)

    tracking.connect(handler)
    try:
        response = Client().post(
            "/anymail/postmark/tracking/",
            data=request["body"],
            content_type=request["headers"]["Content-Type"],
            HTTP_AUTHORIZATION=request["headers"]["Authorization"],
        )
    finally:
        tracking.disconnect(handler)
    assert response.status_code == 200, response.content
    return events


@pytest.mark.django_db
@pytest.mark.urls("webhooks.tests.test_webhooks_anymail")
@override_settings(ANYMAIL={"WEBHOOK_SECRET": "hookuser:hookpass"})
def test_anymail_reads_bounce_and_delivery(server, receiver, private_ok, queued):  # noqa: F811
    stream = get_stream(server, "outbound")
    url = f"http://hookuser:hookpass@127.0.0.1:{receiver.port}/anymail/postmark/tracking/"
    clean, user, password = guard.split_credentials(url)
    hook = all_triggers(stream, clean)
    hook.http_auth_username, hook.http_auth_password = user, password
    hook.save()
    message = outbound(server, stream, tag="welcome", metadata={"order": "A-17"})
    hard = bounce(server, stream, message_id=message.message_id, tag="welcome",
                  metadata={"order": "A-17"})  # fmt: skip
    fanout.enqueue_event(record_bounce_event(hard, outbound=message).pk)
    fanout.enqueue_event(
        record_message_event(message, "Delivery", "user@example.net", details="250 OK").pk
    )
    drain(queued)
    bounced_request, delivered_request = receiver.requests
    assert base64.b64decode(bounced_request["headers"]["Authorization"][6:]) == b"hookuser:hookpass"

    [event] = parse_with_anymail(bounced_request)
    assert event.event_type == "bounced" and event.reject_reason == "bounced"
    assert event.recipient == "user@example.net"
    assert event.message_id == str(message.message_id)
    assert event.tags == ["welcome"] and event.metadata == {"order": "A-17"}
    assert event.event_id == str(hard.id) and event.timestamp is not None
    assert event.mta_response == "550 5.1.1 no such user"

    [event] = parse_with_anymail(delivered_request)
    assert event.event_type == "delivered"
    assert event.recipient == "user@example.net"
    assert event.message_id == str(message.message_id)
    assert event.tags == ["welcome"] and event.metadata == {"order": "A-17"}
    assert event.timestamp is not None and event.mta_response == "250 OK"
