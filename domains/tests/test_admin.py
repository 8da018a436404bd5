"""The admin of domains and sender signatures: the records to publish, Verify now, Rotate DKIM
key, Resend confirmation and Confirm; who may see and use them."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from delivery.tests.sinks import DnsServer
from domains.models import Domain, SenderSignature
from domains.services import create_domain, create_sender
from messages.models import Submission
from servers.models import StaffServerAccess
from streams.services import create_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def dns(settings):
    settings.BOUNCE_DOMAIN = "bounces.mail.test"
    with DnsServer({}) as server:
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{server.port}"]
        yield server


def staff(*, all_servers: bool, codenames=("view_domain", "change_domain", "add_domain",
                                          "view_sendersignature", "change_sendersignature",
                                          "add_sendersignature")):  # fmt: skip
    user = User.objects.create_user(f"staff{User.objects.count()}", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="domains", codename__in=codenames)
    )
    access = StaffServerAccess.objects.create(user=user, all_servers=all_servers)
    if not all_servers:
        access.servers.set([create_server(f"Limited {user.pk}")])
    client = Client()
    client.force_login(user)
    return client


def test_the_domain_page_shows_the_records_and_verify_now_checks_them(admin_client, dns):
    domain = create_domain("shop.test")
    key = domain.keys.get()
    url = reverse("admin:domains_domain_change", args=[domain.pk])
    page = admin_client.get(url).content.decode()
    assert key.host in page and key.text_value in page and "pm-bounces.shop.test" in page
    assert 'data-copy-target="record-value-1"' in page and 'id="verify-now"' in page
    assert "refused until DKIM is verified" in page

    dns.set(key.host, "TXT", [key.text_value])
    dns.set("pm-bounces.shop.test", "CNAME", ["bounces.mail.test."])
    response = admin_client.post(url + "verify/", follow=True)
    page = response.content.decode()
    assert "DKIM (" + key.host + "): The record matches the key." in page
    assert "SPF (shop.test): shop.test has no SPF record (v=spf1)." in page
    assert "allowed (DKIM verified)" in page
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.return_path_verified and not domain.spf_verified

    admin_client.post(url + "rotate/")
    pending = domain.keys.get(state="pending")
    page = admin_client.get(url).content.decode()
    assert pending.host in page and "A key rotation is pending" in page
    assert admin_client.get(url + "verify/").status_code == 405  # POST only


def test_adding_a_domain_in_the_admin_makes_its_keys(admin_client):
    response = admin_client.post(
        reverse("admin:domains_domain_add"),
        {"name": "Shop.Test", "return_path_domain": "", "ed25519": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    domain = Domain.objects.get(name="shop.test")
    assert domain.return_path_domain == "pm-bounces.shop.test"
    assert sorted(domain.keys.values_list("algorithm", "state")) == [
        ("ed25519", "pending"), ("rsa", "pending")
    ]  # fmt: skip
    again = admin_client.post(reverse("admin:domains_domain_add"), {"name": "bad"})
    assert "is not a valid domain name" in again.content.decode()


def test_signatures_are_resent_and_confirmed_from_the_admin(admin_client):
    signature = create_sender("owner@shop.test")
    url = reverse("admin:domains_sendersignature_change", args=[signature.pk])
    page = admin_client.get(url).content.decode()
    assert 'id="resend-confirmation"' in page and "refused until confirmed" in page
    admin_client.post(url + "resend/")
    assert Submission.objects.filter(rcpt_to=["owner@shop.test"]).count() == 1
    admin_client.post(url + "confirm/")
    signature.refresh_from_db()
    assert signature.confirmed
    response = admin_client.post(url + "resend/", follow=True)
    assert "already confirmed" in response.content.decode()
    assert Submission.objects.filter(rcpt_to=["owner@shop.test"]).count() == 1

    added = admin_client.post(
        reverse("admin:domains_sendersignature_add"),
        {"email": "News@Shop.test", "name": "News", "reply_to": "", "confirmation_note": "Hi"},
    )
    assert added.status_code == 302
    news = SenderSignature.objects.get(email="news@shop.test")
    assert not news.confirmed and Submission.objects.filter(rcpt_to=["news@shop.test"]).exists()


def test_the_changelist_actions(admin_client, dns):
    signature = create_sender("owner@shop.test")
    admin_client.post(
        reverse("admin:domains_sendersignature_changelist"),
        {"action": "confirm", "_selected_action": [signature.pk]},
    )
    assert SenderSignature.objects.get(pk=signature.pk).confirmed
    domain = create_domain("shop.test")
    admin_client.post(
        reverse("admin:domains_domain_changelist"),
        {"action": "verify_selected", "_selected_action": [domain.pk]},
    )
    assert Domain.objects.get(pk=domain.pk).dkim_checked_at is not None


def test_account_wide_pages_are_hidden_from_staff_limited_to_some_servers(dns):
    domain = create_domain("shop.test")
    signature = create_sender("owner@shop.test")
    urls = [
        reverse("admin:domains_domain_change", args=[domain.pk]),
        reverse("admin:domains_sendersignature_change", args=[signature.pk]),
    ]
    limited = staff(all_servers=False)
    for url in urls:
        assert limited.get(url).status_code in (302, 403, 404)
    assert limited.post(urls[0] + "verify/").status_code == 404
    assert limited.post(urls[1] + "confirm/").status_code == 404
    assert not SenderSignature.objects.get(pk=signature.pk).confirmed

    viewer = staff(all_servers=True, codenames=("view_domain", "view_sendersignature"))
    assert viewer.get(urls[0]).status_code == 200
    assert 'id="verify-now"' not in viewer.get(urls[0]).content.decode()
    assert viewer.post(urls[0] + "verify/").status_code == 403
    assert viewer.post(urls[1] + "confirm/").status_code == 403

    manager = staff(all_servers=True)
    assert manager.post(urls[1] + "confirm/").status_code == 302
    assert SenderSignature.objects.get(pk=signature.pk).confirmed


def test_operators_may_rotate_and_delete_the_services_own_domain_with_a_warning(
    admin_client, settings
):
    """Account tokens may not touch it (api/tests/test_api_domains.py); the admin may, and says
    what it costs."""
    from domains.signing import ensure_service_key, forget

    settings.DKIM_SERVICE_DOMAIN = "mail.operator.example"
    forget()
    domain = ensure_service_key()[0].domain
    url = reverse("admin:domains_domain_change", args=[domain.pk])
    page = admin_client.get(url).content.decode()
    assert 'id="service-domain"' in page and "Account tokens cannot change" in page
    rotated = admin_client.post(url + "rotate/", follow=True).content.decode()
    assert "the service&#x27;s own domain" in rotated and domain.keys.count() == 2
    delete_url = reverse("admin:domains_domain_delete", args=[domain.pk])
    confirm = admin_client.get(delete_url).content.decode()
    assert "the service&#x27;s own domain" in confirm
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not Domain.objects.filter(name="mail.operator.example").exists()
    other = create_domain("shop.test")
    page = admin_client.get(reverse("admin:domains_domain_change", args=[other.pk]))
    assert 'id="service-domain"' not in page.content.decode()
    forget()


def test_admin_resends_are_limited_like_the_apis(admin_client, settings):
    settings.SENDER_CONFIRMATIONS_PER_ADDRESS_PER_DAY = 2
    signature = create_sender("owner@shop.test")
    url = reverse("admin:domains_sendersignature_change", args=[signature.pk])
    for _ in range(2):
        admin_client.post(url + "resend/")
    page = admin_client.post(url + "resend/", follow=True).content.decode()
    assert "Too many confirmation messages to owner@shop.test" in page
    listing = admin_client.post(
        reverse("admin:domains_sendersignature_changelist"),
        {"action": "resend_confirmation", "_selected_action": [signature.pk]},
        follow=True,
    ).content.decode()
    assert "Too many confirmation messages" in listing and "0 confirmation message(s)" in listing
    assert Submission.objects.filter(rcpt_to=["owner@shop.test"]).count() == 2
    # An operator may still confirm the address without a message.
    admin_client.post(url + "confirm/")
    assert SenderSignature.objects.get(pk=signature.pk).confirmed


@pytest.mark.django_db
def test_the_demo_domain_shows_that_it_signs_though_dns_was_never_checked(admin_client):
    """ensuredemo marks example.com verified without a look-up: its key signs, so the admin
    says so, and that DNS was not checked (not "not checked" alone, nor "verified")."""
    import io

    from django.core.management import call_command

    Domain.objects.filter(name="example.com").delete()  # the tests' own, made without a key
    call_command("ensuredemo", stdout=io.StringIO())
    domain = Domain.objects.get(name="example.com")
    listing = admin_client.get("/admin/domains/domain/").content.decode()
    assert '<strong class="pm-ok">signing</strong>; DNS not checked' in listing
    page = admin_client.get(f"/admin/domains/domain/{domain.pk}/change/").content.decode()
    assert "allowed (DKIM signing; DNS not checked, and not checked periodically" in page
    dkim_row = page.split('id="record-1"')[1].split("</tr>")[0]
    assert "signing</strong>; DNS not checked" in dkim_row and "verified" not in dkim_row
