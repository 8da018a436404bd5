"""One form for domains and addresses (core.addresses): IDNA 2008 with the UTS #46 mapping,
non-transitional, so that a domain is checked, signed and routed as the same name."""

import pytest

from core import dkim
from core.addresses import (
    InvalidDomain,
    address_key,
    ascii_domain,
    domain_of,
    normalise_address,
)
from delivery.tests.sinks import DnsServer
from delivery.transport import (
    PermanentDnsFailure,
    destination_of,
    envelope_address,
    hosts_for,
)
from domains.from_rule import parse_from_value
from domains.identity import sender_refusal
from domains.services import IdentityError, create_domain, create_sender
from domains.signing import identity_for, signature_for
from domains.verification import verify_dkim
from streams.suppressions import normalise

MESSAGE = b"From: x@example.com\r\nTo: y@example.net\r\nSubject: hi\r\n\r\nHello\r\n"


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008: ß is kept (IDNA 2003 made it fass.de)
        ("FAß.DE", "xn--fa-hia.de"),  # upper case mapped (UTS #46)
        ("faß.de.", "xn--fa-hia.de"),  # the root's trailing dot dropped
        (" xn--fa-hia.de ", "xn--fa-hia.de"),  # the A-label is the same domain
        ("fass.de", "fass.de"),  # …and fass.de another one
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("SHOP.Test.", "shop.test"),
        ("a\u3002b\uff0eexample", "a.b.example"),  # ideographic and full-width dots
        ("_dmarc.shop.test", "_dmarc.shop.test"),  # ASCII labels pass as DNS takes them
    ],
)
def test_a_domain_is_written_in_one_form(written, stored):
    assert ascii_domain(written) == stored


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "a..example",  # an empty label
        "example.com..",
        "☃.example",  # valid in IDNA 2003, not in IDNA 2008
        "\ufffd.example",
        "-ü.example",  # a hyphen may not start a label
        "a\u200db.example",  # a joiner out of its context (CONTEXTJ)
        "a" * 64 + ".example",  # a label over 63 octets
        "ü" * 70 + ".example",  # …once written as an A-label
        ("x" * 63 + ".") * 4 + "com",  # a name over 253 octets
    ],
)
def test_an_invalid_name_is_refused_with_a_value_error(name):
    with pytest.raises(InvalidDomain) as refused:
        ascii_domain(name)
    assert isinstance(refused.value, ValueError)


def test_the_longest_name_is_taken():
    name = ("x" * 63 + ".") * 3 + "x" * 61
    assert len(name) == 253 and ascii_domain(name.upper() + ".") == name


def test_addresses_keep_their_local_part_and_normalise_their_domain():
    assert normalise_address(" Jörg@FAß.de. ") == "Jörg@xn--fa-hia.de"
    assert domain_of("Jörg@FAß.de") == "xn--fa-hia.de"
    assert domain_of("x@") == domain_of("@faß.de") == domain_of("x@☃.example") == ""
    with pytest.raises(InvalidDomain):
        normalise_address("no-domain")
    with pytest.raises(InvalidDomain):
        normalise_address("x@a..b")


def test_whole_addresses_compare_without_letter_case():
    assert address_key("Jörg@FAß.DE") == "jörg@xn--fa-hia.de"
    assert address_key("X@FASS.de") == "x@fass.de"
    assert address_key("X@☃.Example") == "x@☃.example"  # no valid domain: only lower-cased
    assert normalise("X@FAß.DE.") == "x@xn--fa-hia.de"  # suppressions
    assert normalise("X@FAß.DE") != normalise("x@fass.de")


def test_dkim_signs_with_the_a_label():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    signer = dkim.Signer("FAß.de.", "s1", ed25519.Ed25519PrivateKey.generate())
    assert signer.domain == "xn--fa-hia.de"
    assert b"d=xn--fa-hia.de;" in dkim.sign(MESSAGE, [signer])
    with pytest.raises(ValueError):
        dkim.Signer("☃.example", "s1", ed25519.Ed25519PrivateKey.generate())


@pytest.mark.django_db
def test_fass_with_sharp_s_is_checked_signed_and_routed_as_its_a_label(settings):
    settings.BOUNCE_DOMAIN = settings.DKIM_SERVICE_DOMAIN = "bounces.mail.test"
    settings.DNS_VERIFY_TIMEOUT = 2.0
    settings.OUTBOUND_SMTP_RELAY = ""
    settings.OUTBOUND_DIRECT_MX = True
    domain = create_domain("FAß.de")
    assert domain.name == "xn--fa-hia.de"
    with pytest.raises(IdentityError) as refused:
        create_domain("xn--fa-hia.de.")
    assert refused.value.error_code == 512  # the same domain
    key = domain.keys.get()
    assert key.host.endswith("._domainkey.xn--fa-hia.de")
    records = {
        (key.host, "TXT"): [key.text_value],
        ("xn--fa-hia.de", "MX"): ["10 mx.xn--fa-hia.de."],
    }
    with DnsServer(records) as server:
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{server.port}"]
        # checked: verification looks the A-label up, the From rule compares with it
        assert [c.status for c in verify_dkim(domain)] == ["verified"]
        assert domain.dkim_verified
        assert sender_refusal("x@faß.de") is None
        assert sender_refusal("x@FAß.DE.") is None
        assert sender_refusal("x@xn--fa-hia.de") is None
        assert sender_refusal("x@FASS.de")[0] == 400  # fass.de is another domain
        # signed: d= is the A-label; fass.de is signed by the service's domain
        assert [s.domain for s in identity_for("x@FAß.de").signers] == ["xn--fa-hia.de"]
        assert b"d=xn--fa-hia.de;" in signature_for(parse_from_value("x@faß.de"), MESSAGE)
        assert [s.domain for s in identity_for("x@fass.de").signers] == ["bounces.mail.test"]
        # routed: recipients are grouped by, and delivered through, the A-label's MX
        assert destination_of("x@FAß.de") == destination_of("y@xn--fa-hia.de") == "xn--fa-hia.de"
        assert envelope_address("x@faß.de") == ("x@xn--fa-hia.de", False)
        assert [h.host for h in hosts_for(destination_of("x@faß.de"))] == ["mx.xn--fa-hia.de"]
        assert destination_of("x@fass.de") == "fass.de"
        with pytest.raises(PermanentDnsFailure):
            hosts_for(destination_of("x@fass.de"))


@pytest.mark.django_db
def test_a_sender_signature_is_stored_and_matched_in_the_one_form():
    signature = create_sender("Info@FAß.de", confirmed=True)
    assert signature.email == "info@xn--fa-hia.de"
    assert sender_refusal("INFO@faß.de.") is None
    assert sender_refusal("info@fass.de")[0] == 400


@pytest.mark.django_db
def test_suppressions_stored_in_another_form_are_rewritten(server):
    import importlib

    from django.apps import apps

    from streams.models import Suppression
    from streams.suppressions import inactive_among

    migration = importlib.import_module("streams.migrations.0003_suppression_ascii_domains")
    stream = server.streams.get(stream_id="outbound")
    for email, reason in [
        ("a@bücher.example", "HardBounce"),
        ("b@bücher.example", "SpamComplaint"),
        ("b@xn--bcher-kva.example", "HardBounce"),
        ("c@shop.test.", "ManualSuppression"),
        ("d@shop.test", "HardBounce"),
    ]:
        Suppression.objects.create(stream=stream, email=email, reason=reason, origin="Recipient")
    migration.normalise_domains(apps, None)
    assert dict(Suppression.objects.values_list("email", "reason")) == {
        "a@xn--bcher-kva.example": "HardBounce",
        "b@xn--bcher-kva.example": "SpamComplaint",
        "c@shop.test": "ManualSuppression",
        "d@shop.test": "HardBounce",
    }
    assert inactive_among(stream, ["A@Bücher.example", "C@SHOP.test."]) == {
        "a@xn--bcher-kva.example",
        "c@shop.test",
    }
