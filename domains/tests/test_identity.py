"""Who may send as whom, and creating domains and signatures (domains.identity, .services)."""

import pytest

from core import dkim_keys as keys
from domains.identity import sender_refusal
from domains.models import DkimKey, Domain
from domains.services import IdentityError, confirm_sender, create_domain, create_sender

UNKNOWN = (
    "The 'From' address you supplied (shop@unverified.test) is not a Sender Signature on your "
    "account. Please add and confirm this address in order to be able to use it in the 'From' "
    "field of your messages."
)


@pytest.mark.django_db
def test_a_dkim_verified_domain_may_send_from_any_of_its_addresses():
    domain = create_domain("Shop.Test")
    assert sender_refusal("orders@shop.test") == (
        400,
        UNKNOWN.replace("shop@unverified", "orders@shop"),
    )
    Domain.objects.filter(pk=domain.pk).update(dkim_verified=True)
    assert sender_refusal("orders@shop.test") is None
    assert sender_refusal("Orders@SHOP.test") is None
    assert sender_refusal("orders@sub.shop.test") is not None  # a subdomain is a domain of its own


@pytest.mark.django_db
def test_a_sender_signature_must_be_confirmed():
    assert sender_refusal("shop@unverified.test") == (400, UNKNOWN)
    signature = create_sender("Shop@Unverified.test", name="Shop")
    assert signature.email == "shop@unverified.test"
    assert sender_refusal("shop@unverified.test") == (401, "Sender signature not confirmed.")
    confirm_sender(signature)
    assert sender_refusal("SHOP@unverified.test") is None
    assert sender_refusal("other@unverified.test")[0] == 400


@pytest.mark.django_db
def test_a_new_domain_has_a_pending_key_and_a_return_path_under_it():
    domain = create_domain("example-shop.test", ed25519=True)
    assert domain.return_path_domain == "pm-bounces.example-shop.test"
    rsa, ed = domain.key("pending", keys.RSA), domain.key("pending", keys.ED25519)
    assert rsa.host.endswith("pm._domainkey.example-shop.test")
    assert rsa.text_value.startswith("k=rsa;p=MIIBIjAN")  # 2048-bit SubjectPublicKeyInfo
    assert ed.text_value.startswith("k=ed25519;p=") and len(ed.public_key) == 44
    assert rsa.private_key().key_size == 2048
    assert "PRIVATE KEY" not in rsa.private_key_encrypted
    assert DkimKey.objects.filter(domain=domain, state="active").count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "return_path"),
    [("no-dot", None), ("bad_label.test", None), ("-x.test", None), ("x" * 64 + ".test", None),
     ("shop.test", "bounces.elsewhere.test"), ("1.2.3.4", None), ("", None)],
)  # fmt: skip
def test_bad_domains_are_refused_with_a_reason(name, return_path):
    with pytest.raises(IdentityError):
        create_domain(name, return_path)


@pytest.mark.django_db
def test_duplicates_are_refused():
    create_domain("shop.test", "mail.shop.test")
    with pytest.raises(IdentityError) as refused:
        create_domain("SHOP.test")
    assert refused.value.error_code == 512
    create_sender("a@shop.test")
    with pytest.raises(IdentityError) as refused:
        create_sender("A@shop.test")
    assert refused.value.error_code == 504


@pytest.mark.django_db
def test_an_internationalised_domain_is_stored_in_its_ascii_form():
    domain = create_domain("bücher.test")
    assert domain.name == "xn--bcher-kva.test"
    Domain.objects.filter(pk=domain.pk).update(dkim_verified=True)
    assert sender_refusal("info@bücher.test") is None
