"""The bounce admin: read-only list with filters and search, the dump, the reactivate action."""

import uuid

import pytest
from django.urls import reverse

from bounces.models import Bounce
from bounces.services import record_bounce
from streams.models import Suppression
from streams.services import get_stream
from streams.suppressions import suppress


def make(server, **fields):
    values = {"message_stream": "outbound", "type": "HardBounce", "email": "user@example.com"}
    values.update(fields)
    return record_bounce(server=server, **values)


@pytest.mark.django_db
def test_changelist_filters_and_search(admin_client, server):
    message_id = uuid.uuid4()
    make(server, email="findme@example.com", tag="welcome", message_id=message_id)
    make(server, email="other@example.com", type="SoftBounce")
    url = reverse("admin:bounces_bounce_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "findme@example.com" in content and "other@example.com" in content
    for query in (
        "?type__exact=SoftBounce",
        "?inactive__exact=0",
        f"?server__id__exact={server.id}",
    ):
        assert admin_client.get(url + query).status_code == 200
    assert admin_client.get(url + "?message_stream=outbound").status_code == 200
    for term in ("findme", "welcome", str(message_id)):
        found = admin_client.get(url, {"q": term}).content.decode()
        assert "findme@example.com" in found and "other@example.com" not in found, term
    assert admin_client.get(url, {"q": "not-a-uuid-at-all"}).status_code == 200
    assert admin_client.get(url + "?bounced_at__year=2020").status_code == 200  # date hierarchy


@pytest.mark.django_db
def test_read_only_and_the_dump_in_pre(admin_client, server):
    bounce = make(server, content="<script>alert(1)</script>\nline two")
    assert admin_client.get(reverse("admin:bounces_bounce_add")).status_code == 403
    response = admin_client.get(reverse("admin:bounces_bounce_change", args=[bounce.id]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "<pre" in content and "pre-wrap" in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<script>alert(1)</script>" not in content
    post = admin_client.post(
        reverse("admin:bounces_bounce_change", args=[bounce.id]), {"email": "changed@x.com"}
    )
    assert post.status_code == 403
    bounce.refresh_from_db()
    assert bounce.email == "user@example.com"


@pytest.mark.django_db
def test_reactivate_action_uses_the_api_rule(admin_client, server):
    stream = get_stream(server, "outbound")
    hard = make(server, email="hard@example.com", stream=stream, inactive=True, can_activate=True)
    suppress(stream, hard.email, "HardBounce", "Recipient", bounce=hard)
    spam = make(server, email="spam@example.com", type="SpamComplaint", inactive=True)
    suppress(stream, spam.email, "SpamComplaint", "Recipient", bounce=spam)
    response = admin_client.post(
        reverse("admin:bounces_bounce_changelist"),
        {"action": "reactivate", "_selected_action": [hard.id, spam.id]},
        follow=True,
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "Reactivated 1 bounce" in content
    assert "spam@example.com" in content and "spam complaint" in content
    hard.refresh_from_db()
    spam.refresh_from_db()
    assert hard.inactive is False and spam.inactive is True
    assert list(Suppression.objects.values_list("email", flat=True)) == ["spam@example.com"]
    assert Bounce.objects.count() == 2
