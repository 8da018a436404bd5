"""An operator's actions on a message still being delivered (``delivery.operator``): try its
deferred recipients now, or cancel the waiting ones; through the functions, the admin's actions
and the Messages and Bounces APIs the tenant reads."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from bounces.models import Bounce
from core import leases
from delivery import operator
from delivery.relay import deliver_message
from delivery.tests.test_delivery import outbound, recipient
from messages.models import Recipient


@pytest.fixture
def deferred(live, sink):
    """A message whose one recipient the relay deferred (450), its next try an hour away."""
    message = outbound(live, ["later@example.net"])
    assert deliver_message(message.pk) == "queued"
    state = recipient(message, "later@example.net")
    assert state.status == "deferred" and state.next_attempt_at > timezone.now()
    return message


@pytest.fixture
def published(monkeypatch):
    from delivery import tasks

    sent = []
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda args, **kw: sent.append(args[0]))
    return sent


@pytest.mark.django_db
def test_retry_now_makes_deferred_recipients_due_and_queues_them(deferred, published):
    assert operator.retry_now([deferred.pk]) == 1
    assert published == [deferred.pk]
    assert recipient(deferred, "later@example.net").next_attempt_at <= timezone.now()
    assert deliver_message(deferred.pk) == "sent"  # the sink takes it the second time


@pytest.mark.django_db
def test_retry_now_leaves_alone_what_is_not_deferred_or_is_held(deferred, published, live, sink):
    delivered = outbound(live, ["ok@example.net"])
    assert deliver_message(delivered.pk) == "sent"
    assert operator.retry_now([delivered.pk]) == 0
    # A worker holds the deferred recipient: it is its to finish.
    leases.lease(Recipient.objects.filter(message=deferred), 60)
    assert operator.retry_now([deferred.pk]) == 0
    assert operator.retry_now([]) == 0
    assert published == []


@pytest.mark.django_db
def test_cancel_ends_waiting_recipients_failed_with_a_soft_bounce(deferred, live, sink):
    also = outbound(live, ["new1@example.net", "new2@example.net"])  # never tried yet
    assert operator.cancel([deferred.pk, also.pk]) == 3
    for message in (deferred, also):
        message.refresh_from_db()
        assert message.status == "failed"
        assert set(message.deliveries.values_list("status", flat=True)) == {"failed"}
    cancelled = Bounce.objects.filter(type="SoftBounce").order_by("email")
    assert [b.email for b in cancelled] == ["later@example.net", "new1@example.net",
                                            "new2@example.net"]  # fmt: skip
    assert all(operator.CANCELLED in b.details for b in cancelled)
    # Nothing is left to deliver, and cancelling again changes nothing.
    assert deliver_message(also.pk) == "failed"
    assert operator.cancel([deferred.pk, also.pk]) == 0
    assert sink.messages == []


@pytest.mark.django_db
def test_cancel_leaves_a_recipient_a_worker_holds(deferred):
    leases.lease(Recipient.objects.filter(message=deferred), 60)
    assert operator.cancel([deferred.pk]) == 0
    assert recipient(deferred, "later@example.net").status == "deferred"


@pytest.mark.django_db
def test_admin_actions_and_what_the_tenant_sees(deferred, published, live):
    staff = get_user_model().objects.create_superuser("op", "op@example.com", "pass-12345")
    admin = Client()
    admin.force_login(staff)
    changelist = "/admin/outbound/outboundmessage/"
    answer = admin.post(changelist, {"action": "retry_deferred_now", "_selected_action":
                                     [deferred.pk]}, follow=True)  # fmt: skip
    assert answer.status_code == 200 and "1 message(s) queued" in answer.text
    assert published == [deferred.pk]
    answer = admin.post(changelist, {"action": "cancel_delivery", "_selected_action":
                                     [deferred.pk]}, follow=True)  # fmt: skip
    assert "Delivery cancelled for 1 recipient(s)" in answer.text
    answer = admin.post(changelist, {"action": "cancel_delivery", "_selected_action":
                                     [deferred.pk]}, follow=True)  # fmt: skip
    assert "has a recipient waiting" in answer.text

    tenant = Client(
        HTTP_X_POSTMARK_SERVER_TOKEN=live.tokens.first().token, HTTP_ACCEPT="application/json"
    )
    details = tenant.get(f"/messages/outbound/{deferred.message_id}/details").json()
    assert details["Status"] == "Processed"
    bounces = tenant.get("/bounces", {"count": 10, "offset": 0, "type": "SoftBounce"}).json()
    assert [b["Details"] for b in bounces["Bounces"]] == [operator.CANCELLED]


@pytest.mark.django_db
def test_the_actions_need_the_right_to_change_messages(deferred, published):
    viewer = get_user_model().objects.create_user("viewer", "v@example.com", "pass-12345",
                                                  is_staff=True)  # fmt: skip
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_outboundmessage"))
    from servers.models import StaffServerAccess

    StaffServerAccess.objects.create(user=viewer, all_servers=True)
    client = Client()
    client.force_login(viewer)
    page = client.get("/admin/outbound/outboundmessage/")
    assert page.status_code == 200 and "retry_deferred_now" not in page.text
    form = {"action": "cancel_delivery", "_selected_action": [deferred.pk]}
    client.post("/admin/outbound/outboundmessage/", form)
    assert recipient(deferred, "later@example.net").status == "deferred"


@pytest.mark.django_db
def test_the_message_page_offers_the_actions_while_the_message_waits(deferred, live, sink):
    staff = get_user_model().objects.create_superuser("op", "op@example.com", "pass-12345")
    admin = Client()
    admin.force_login(staff)
    page = admin.get(f"/admin/outbound/outboundmessage/{deferred.pk}/change/").text
    assert 'id="retry-now"' in page and 'id="cancel-delivery"' in page
    assert f'name="_selected_action" value="{deferred.pk}"' in page
    delivered = outbound(live, ["ok@example.net"])
    assert deliver_message(delivered.pk) == "sent"
    page = admin.get(f"/admin/outbound/outboundmessage/{delivered.pk}/change/").text
    assert 'id="delivery-actions"' not in page
