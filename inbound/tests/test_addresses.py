"""Which server an inbound recipient belongs to, and inbound rules' forms and matching."""

import pytest

from inbound.addresses import inbound_address, mailbox_hash, place
from inbound.models import InboundRule
from inbound.rules import InvalidRule, matching_rule, normalise_rule
from smtpgw.credentials import identity_for_inbound
from streams.models import MessageStream

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def domain(settings):
    settings.INBOUND_DOMAIN = "Inbound.Mail.Example"


def test_the_hash_address_with_and_without_a_mailbox_hash(server):
    address = inbound_address(server)
    assert address == f"{server.inbound_hash}@Inbound.Mail.Example"
    found = place(address)
    assert (found.server_id, found.stream_id, found.mailbox_hash) == (server.pk, "inbound", "")
    found = place(f"{server.inbound_hash.upper()}+Ticket-42@INBOUND.mail.example.")
    assert (found.server_id, found.mailbox_hash) == (server.pk, "Ticket-42")


def test_a_servers_own_inbound_domain_takes_any_local_part(server, other_server):
    other_server.inbound_domain = "replies.customer.example"
    other_server.save()
    found = place("Anyone+abc@Replies.Customer.Example")
    assert (found.server_id, found.mailbox_hash, found.key) == (
        other_server.pk,
        "abc",
        "replies.customer.example",
    )


def test_an_international_inbound_domain(server):
    server.inbound_domain = "bücher.example"
    server.save()
    assert place("kontakt@xn--bcher-kva.example").server_id == server.pk
    assert place("kontakt@BÜCHER.example").server_id == server.pk


@pytest.mark.parametrize(
    "address",
    [
        "nobody@inbound.mail.example",
        "0123456789abcdef0123456789abcdef@inbound.mail.example",  # nobody's hash
        "{hash}@other.example",
        "{hash}@inbound.mail.example.evil.example",
        "@inbound.mail.example",
        "{hash}",
        "",
        "{hash}@bad..domain",
    ],
)
def test_addresses_of_no_server(server, address):
    assert place(address.format(hash=server.inbound_hash)) is None
    assert identity_for_inbound(address.format(hash=server.inbound_hash)) is None


def test_an_archived_inbound_stream_takes_nothing(server):
    from django.utils import timezone

    MessageStream.objects.filter(server=server, stream_id="inbound").update(
        archived_at=timezone.now()
    )
    assert place(inbound_address(server)) is None


def test_the_gateways_identity(server):
    identity = identity_for_inbound(inbound_address(server))
    assert identity.kind == "inbound"
    assert identity.server_id == server.pk
    assert identity.stream_id == "inbound"
    assert identity.credential == server.inbound_hash


def test_mailbox_hash():
    assert mailbox_hash("a+b+c@x.example") == "b+c"
    assert mailbox_hash("a@x.example") == ""
    assert mailbox_hash("<a+12345@x.example>") == "12345"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Someone@Example.COM", "someone@example.com"),
        ("  example.com ", "example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("jörg@BÜCHER.example", "jörg@xn--bcher-kva.example"),
    ],
)
def test_rules_are_normalised(given, stored):
    assert normalise_rule(given) == stored


@pytest.mark.parametrize(
    "given", ["", "   ", "not a rule", "@example.com", "localhost", "a@b@c.example", "x" * 400]
)
def test_invalid_rules(given):
    with pytest.raises(InvalidRule):
        normalise_rule(given)


def test_matching_rules(server, other_server):
    InboundRule.objects.create(server=server, rule="spammer@junk.example")
    InboundRule.objects.create(server=server, rule="blocked.example")
    InboundRule.objects.create(server=other_server, rule="other.example")
    assert matching_rule(server.pk, "Spammer@JUNK.example") == "spammer@junk.example"
    assert matching_rule(server.pk, "friend@junk.example") == ""
    assert matching_rule(server.pk, "anyone@Blocked.Example") == "blocked.example"
    assert matching_rule(server.pk, "anyone@sub.blocked.example") == ""
    assert matching_rule(server.pk, "x@other.example") == ""
    assert matching_rule(server.pk, "") == ""


def test_the_inbound_listener_kind(settings):
    from streams.listeners import Listener, smtp_endpoints

    listener = Listener.parse("inbound+proxy=127.0.0.1:25")
    assert (listener.endpoint, listener.port, listener.proxy) == ("inbound", 25, True)
    settings.SMTP_LISTEN = ["transactional=127.0.0.1:2525", "inbound=127.0.0.1:2528"]
    assert [e.kind for e in smtp_endpoints()] == ["transactional"]  # not for clients
    with pytest.raises(ValueError, match="inbound"):
        Listener.parse("outbound=127.0.0.1:25")
