"""The operator's browser path through Django admin: servers, streams, SMTP tokens."""

import re

import pytest
from django.urls import reverse

from servers.models import Server
from streams.models import SmtpToken
from streams.services import get_stream


@pytest.fixture
def staff(admin_client):
    return admin_client


@pytest.mark.django_db
def test_login_page(client):
    response = client.get("/admin/", follow=True)
    assert response.status_code == 200
    assert b"Log in" in response.content or b"log in" in response.content.lower()


@pytest.mark.django_db
def test_adding_a_server_provisions_token_and_streams(staff):
    response = staff.post(
        reverse("admin:servers_server_add"),
        {
            "name": "From the admin",
            "delivery_type": "Sandbox",
            "smtp_api_activated": "on",
            "track_links": "None",
            "streams-TOTAL_FORMS": "0",
            "streams-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    server = Server.objects.get(name="From the admin")
    assert set(server.streams.values_list("stream_id", flat=True)) == {
        "outbound",
        "inbound",
        "broadcast",
    }
    page = staff.get(reverse("admin:servers_server_change", args=[server.pk]))
    assert server.api_tokens[0].encode() in page.content


@pytest.mark.django_db
def test_smtp_switch_actions(staff, server):
    staff.post(
        reverse("admin:servers_server_changelist"),
        {"action": "disable_smtp", "_selected_action": [server.pk]},
    )
    server.refresh_from_db()
    assert server.smtp_api_activated is False


@pytest.mark.django_db
def test_generate_token_shows_the_secret_once(staff, server):
    stream = get_stream(server, "outbound")
    page = staff.get(reverse("admin:streams_messagestream_change", args=[stream.pk]))
    generate = reverse("admin:streams_messagestream_token_generate", args=[stream.pk])
    assert f'action="{generate}"'.encode() in page.content  # a button: the stream is the page's
    assert staff.get(generate).status_code == 405

    response = staff.post(generate)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = SmtpToken.objects.get(stream=stream)
    secret = re.search(rb'id="secret-key">([^<]+)<', response.content).group(1).decode()
    assert token.secret == secret
    assert b"only time the secret key is shown" in response.content

    # Gone on reload of anything else.
    for url in [
        reverse("admin:streams_smtptoken_change", args=[token.pk]),
        reverse("admin:streams_smtptoken_changelist"),
        reverse("admin:streams_messagestream_change", args=[stream.pk]),
    ]:
        page = staff.get(url)
        assert page.status_code == 200
        assert secret.encode() not in page.content
        assert token.access_key.encode() in page.content


@pytest.mark.django_db
def test_a_stream_page_lists_its_tokens_once(staff, server):
    stream = get_stream(server, "outbound")
    staff.post(reverse("admin:streams_messagestream_token_generate", args=[stream.pk]))
    token = SmtpToken.objects.get(stream=stream)
    page = staff.get(reverse("admin:streams_messagestream_change", args=[stream.pk]))
    assert page.content.count(token.access_key.encode()) == 2  # its row, and its Revoke prompt
    assert b"smtp_tokens-TOTAL_FORMS" not in page.content  # no inline repeating them


@pytest.mark.django_db
def test_generating_from_a_stream_page_that_may_have_no_token(staff, server, django_user_model):
    from django.contrib.auth.models import Permission

    from servers.models import StaffServerAccess

    inbound = get_stream(server, "inbound")
    page = staff.get(reverse("admin:streams_messagestream_change", args=[inbound.pk]))
    assert b'id="generate-token"' not in page.content
    generate = reverse("admin:streams_messagestream_token_generate", args=[inbound.pk])
    assert staff.post(generate).status_code == 403
    outbound = get_stream(server, "outbound")
    viewer = django_user_model.objects.create_user("v", "v@example.com", "pass-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_messagestream"))
    StaffServerAccess.objects.create(user=viewer, all_servers=True)
    staff.force_login(viewer)
    page = staff.get(reverse("admin:streams_messagestream_change", args=[outbound.pk]))
    assert page.status_code == 200 and b'id="generate-token"' not in page.content
    generate = reverse("admin:streams_messagestream_token_generate", args=[outbound.pk])
    assert staff.post(generate).status_code == 403
    assert staff.post("/admin/streams/messagestream/99999/tokens/generate/").status_code == 404
    assert not SmtpToken.objects.exists()


@pytest.mark.django_db
def test_inbound_streams_are_not_offered_for_tokens(staff, server):
    inbound = get_stream(server, "inbound")
    response = staff.post(reverse("admin:streams_smtptoken_add"), {"stream": inbound.pk})
    assert response.status_code == 200
    assert b"Select a valid choice" in response.content
    assert not SmtpToken.objects.exists()


@pytest.mark.django_db
def test_revoke_action(staff, server):
    staff.post(
        reverse("admin:streams_smtptoken_add"), {"stream": get_stream(server, "outbound").pk}
    )
    token = SmtpToken.objects.get()
    staff.post(
        reverse("admin:streams_smtptoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    token.refresh_from_db()
    assert token.revoked


@pytest.mark.django_db
def test_stream_id_rules_apply_in_the_admin(staff, server):
    response = staff.post(
        reverse("admin:streams_messagestream_add"),
        {
            "server": server.pk,
            "stream_id": "Bad ID",
            "message_stream_type": "Transactional",
            "name": "x",
            "smtp_tokens-TOTAL_FORMS": "0",
            "smtp_tokens-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert b"must start with a letter" in response.content
