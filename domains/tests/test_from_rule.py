"""The From rule's reading (domains.from_rule) and judgement (domains.identity.from_refusal),
as functions: the hostile corpus, the mailbox read from each honest form, and the sentences."""

import pytest

from core import mime
from domains.from_rule import FromProblem, Sender, parse_from_value, read_from
from domains.identity import from_refusal
from domains.services import confirm_sender, create_sender
from domains.tests.from_corpus import CASES, message, refused_sender, verify_corpus_domains


def judged(case) -> tuple[int, str]:
    header_block, _, _ = mime.split_message(message(case))
    sender = read_from(header_block)
    if isinstance(sender, FromProblem):
        return sender.error_code, sender.message
    refusal = from_refusal(sender)
    return (0, "") if refusal is None else refusal


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_hostile_corpus(case):
    verify_corpus_domains()
    code, text = judged(case)
    assert code == case.code, text
    if code == 300:
        assert text.startswith("Invalid 'From' address: '") and text.endswith("'.")
    if code == 400:
        assert text == refused_sender(case.named)


@pytest.mark.parametrize(
    ("value", "display_name", "address"),
    [
        ("me@example.com", "", "me@example.com"),
        ("<me@example.com>", "", "me@example.com"),
        ("Shop <me@example.com>", "Shop", "me@example.com"),
        ('"Doe, John" <john@example.com>', "Doe, John", "john@example.com"),
        ('"me@example.com" <ceo@bank.test>', "me@example.com", "ceo@bank.test"),
        ("=?us-ascii?q?me=40example=2Ecom?= <ceo@bank.test>", "me@example.com", "ceo@bank.test"),
        ("=?utf-8?b?w4Bsw6k=?= <a@example.com>", "Àlé", "a@example.com"),
        ("Shop <Orders@Shop.EXAMPLE>", "Shop", "Orders@shop.example"),
        ("info@Bücher.test", "", "info@xn--bcher-kva.test"),
        ("Shop <me@example.com> (the shop)", "Shop", "me@example.com"),
        ("me@example.com (Shop)", "", "me@example.com"),
        ("postmaster@localhost", "", "postmaster@localhost"),
    ],
)
def test_what_is_read_from_honest_forms(value, display_name, address):
    sender = parse_from_value(value)
    assert isinstance(sender, Sender), sender
    assert (sender.display_name, sender.address) == (display_name, address)


def test_the_sentence_quotes_the_value_safely():
    problem = parse_from_value("x" * 150 + "\x00")
    assert problem.message == f"Invalid 'From' address: '{'x' * 100}…'."
    nul = read_from(b"From: me@example.com\x00x\r\n")
    assert nul.message == "Invalid 'From' address: 'me@example.com\ufffdx'."
    assert "control character" in nul.details
    two = read_from(b"From: a@example.com\r\nFrom: b@example.com\r\n")
    assert two.message == "Invalid 'From' address: 'a@example.com, b@example.com'."
    assert two.details == "Invalid 'From' address: the message has 2 From fields."
    assert read_from(b"Subject: x").details == (
        "Invalid 'From' address: the message has no From field."
    )


def test_an_encoded_word_never_makes_the_address():
    for value in (
        "=?us-ascii?q?me=40example=2Ecom?=",
        "=?us-ascii?q?me?=@example.com",
        "me@=?us-ascii?q?example.com?=",
        "me@example.=?us-ascii?q?com?=",
        "Shop <=?us-ascii?q?me?=@example.com>",
        "Shop <me@=?us-ascii?q?example.com?=>",
    ):
        assert isinstance(parse_from_value(value), FromProblem), value


@pytest.mark.django_db
def test_a_confirmed_signature_passes_an_unconfirmed_one_is_401():
    signature = create_sender("me@solo.test")
    assert from_refusal(parse_from_value("Me <ME@Solo.test>")) == (
        401,
        "Sender signature not confirmed.",
    )
    confirm_sender(signature)
    assert from_refusal(parse_from_value("Me <ME@Solo.test>")) is None
    assert from_refusal(parse_from_value("other@solo.test"))[0] == 400
