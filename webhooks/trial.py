"""A webhook's "Send test": one POST of a sample payload to its URL, through the same SSRF guard,
client, headers and signature as every real post (``webhooks.client``, ``webhooks.signing``),
recorded nowhere. The sample is for the first trigger the webhook has on (a Delivery when none
is), in the payload's own shape (``webhooks.serializers``), with a MessageID of zeros."""

import uuid

from django.utils import timezone

from bounces.models import Bounce
from messages.models import MessageEvent
from tracking.agents import classify_user_agent
from webhooks.client import Result, http_post
from webhooks.models import Webhook
from webhooks.serializers import webhook_payload
from webhooks.signing import encode, request_headers

TEST_MESSAGE_ID = uuid.UUID(int=0)
TEST_RECIPIENT = "john@example.com"
# Trigger flag → record type, in the order a test picks them.
TRIGGERS = (
    ("delivery_enabled", "Delivery"),
    ("bounce_enabled", "Bounce"),
    ("spam_complaint_enabled", "SpamComplaint"),
    ("open_enabled", "Open"),
    ("click_enabled", "Click"),
    ("subscription_change_enabled", "SubscriptionChange"),
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def record_type_of(webhook: Webhook) -> str:
    return next((kind for flag, kind in TRIGGERS if getattr(webhook, flag)), "Delivery")


def sample_payload(webhook: Webhook, record_type: str) -> dict:
    """A payload of ``record_type`` as the webhook would receive it, for no real message."""
    stream, now = webhook.stream, timezone.now()
    bounce = None
    if record_type in ("Bounce", "SpamComplaint"):
        bounce = Bounce(
            server_id=stream.server_id, stream=stream, message_stream=stream.stream_id,
            type="HardBounce" if record_type == "Bounce" else "SpamComplaint",
            email=TEST_RECIPIENT, from_address="sender@example.com", subject="Test",
            message_id=TEST_MESSAGE_ID, bounced_at=now, tag="test",
            details="Test bounce details: sent by the admin's Send test.",
        )  # fmt: skip
    data = {}
    if record_type in ("Open", "Click"):
        data = {"UserAgent": CHROME, **classify_user_agent(CHROME), "FirstOpen": True}
        if record_type == "Click":
            data.update(OriginalLink="https://example.com/test", ClickLocation="HTML")
    elif record_type == "SubscriptionChange":
        data = {"SuppressSending": True, "SuppressionReason": "ManualSuppression",
                "Origin": "Customer"}  # fmt: skip
    event = MessageEvent(
        server_id=stream.server_id, stream=stream, message_id=TEST_MESSAGE_ID,
        type=record_type,
        recipient=TEST_RECIPIENT, bounce=bounce, details="Test delivery webhook details",
        data=data, occurred_at=now,
    )  # fmt: skip
    return webhook_payload(event)


def send_test(webhook: Webhook, record_type: str | None = None) -> tuple[str, Result]:
    """POST a sample payload to the webhook's URL now; returns its record type and what the
    receiver answered (or why nothing was posted)."""
    record_type = record_type or record_type_of(webhook)
    body = encode(sample_payload(webhook, record_type))
    return record_type, http_post(webhook.url, body, request_headers(webhook, body, 0))
