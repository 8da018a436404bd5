"""A webhook's "Send test" (``webhooks.trial``): a sample payload of each trigger's shape, posted
through the same guard, client, headers and signature as real posts; the admin's button says what
the receiver answered, and records nothing."""

# ruff: noqa: F811 - the fixtures imported from test_webhooks are parameters of the tests

import pytest

from streams.services import get_stream
from webhooks import signing, trial
from webhooks.models import Webhook, WebhookAttempt, WebhookDelivery
from webhooks.tests.test_webhooks import (
    Receiver,
    private_ok,  # noqa: F401 - fixture
    receiver,  # noqa: F401 - fixture
)


def hook(server, url, **triggers) -> Webhook:
    webhook = Webhook(stream=get_stream(server, "outbound"), url=url, **triggers)
    webhook.save()
    return webhook


@pytest.mark.django_db
@pytest.mark.parametrize(
    "flag, record_type, field",
    [
        ("delivery_enabled", "Delivery", "DeliveredAt"),
        ("bounce_enabled", "Bounce", "BouncedAt"),
        ("spam_complaint_enabled", "SpamComplaint", "BouncedAt"),
        ("open_enabled", "Open", "FirstOpen"),
        ("click_enabled", "Click", "OriginalLink"),
        ("subscription_change_enabled", "SubscriptionChange", "SuppressSending"),
    ],
)
def test_each_trigger_gets_a_signed_sample_of_its_shape(
    server, receiver, private_ok, flag, record_type, field
):
    webhook = hook(server, receiver.url, **{flag: True})
    kind, result = trial.send_test(webhook)
    assert (kind, result.ok, result.status_code) == (record_type, True, 200)
    [request] = receiver.requests
    payload = receiver.payloads()[0]
    assert payload["RecordType"] == record_type and field in payload
    assert payload["MessageID"] == str(trial.TEST_MESSAGE_ID)
    assert payload["MessageStream"] == "outbound"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert signing.verify_signature(
        webhook.signing_secret,
        request["body"],
        headers[signing.SIGNATURE_HEADER.lower()],
        headers[signing.TIMESTAMP_HEADER.lower()],
    )
    assert not WebhookDelivery.objects.exists() and not WebhookAttempt.objects.exists()


@pytest.mark.django_db
def test_a_webhook_with_no_trigger_gets_a_delivery(server, receiver, private_ok):
    assert trial.send_test(hook(server, receiver.url))[0] == "Delivery"


@pytest.mark.django_db
def test_the_guard_refuses_private_addresses_for_tests_too(server, receiver, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    _, result = trial.send_test(hook(server, receiver.url, delivery_enabled=True))
    assert result.refused and not result.ok and receiver.requests == []


@pytest.mark.django_db
def test_the_admin_button_says_what_the_receiver_answered(server, admin_client, private_ok):
    receiver = Receiver(status=[200, 500])
    try:
        webhook = hook(server, receiver.url, open_enabled=True)
        page = admin_client.get(f"/admin/webhooks/webhook/{webhook.pk}/change/").text
        assert 'id="send-test"' in page and "sample Open payload" in page
        url = f"/admin/webhooks/webhook/{webhook.pk}/send-test/"
        assert admin_client.get(url).status_code == 405
        answer = admin_client.post(url, follow=True).text
        assert "Test Open payload posted to" in answer and "HTTP 200 in" in answer
        answer = admin_client.post(url, follow=True).text
        assert "the receiver answered HTTP 500" in answer
        assert len(receiver.requests) == 2
    finally:
        receiver.stop()
    # Nothing listens any more: the error says so.
    answer = admin_client.post(url, follow=True).text
    assert "Test Open payload not delivered to" in answer
    assert admin_client.post("/admin/webhooks/webhook/99999/send-test/").status_code == 404


@pytest.mark.django_db
def test_sending_a_test_needs_the_right_to_change_the_webhook(server, client, django_user_model):
    from django.contrib.auth.models import Permission

    from servers.models import StaffServerAccess

    webhook = hook(server, "https://hooks.example.org/in", delivery_enabled=True)
    viewer = django_user_model.objects.create_user("v", "v@example.com", "pass-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhook"))
    StaffServerAccess.objects.create(user=viewer, all_servers=True)
    client.force_login(viewer)
    page = client.get(f"/admin/webhooks/webhook/{webhook.pk}/change/").text
    assert 'id="send-test"' not in page
    assert client.post(f"/admin/webhooks/webhook/{webhook.pk}/send-test/").status_code == 403
