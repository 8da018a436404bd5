"""DKIM signatures made by core.dkim, checked by an independent verifier (dkimpy) against
the TXT records the keys publish."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core import dkim
from core import dkim_keys as keys
from domains.tests.dkim_verify import PublishedKeys, new_signer, signature_tags, verify_all

pytestmark = pytest.mark.no_db

MESSAGE = (
    b"From: Shop <orders@shop.example>\r\n"
    b"To: a@one.example\r\n"
    b"Subject: Your order\r\n"
    b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@shop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Thank you for your order.\r\n"
)


@pytest.fixture
def dns():
    return PublishedKeys()


@pytest.fixture
def rsa_signer(dns):
    return new_signer("shop.example", "pm2026", keys.RSA, dns)


@pytest.fixture
def ed_signer(dns):
    return new_signer("shop.example", "pm2026e", keys.ED25519, dns)


def signed(message: bytes, *signers) -> bytes:
    """The message as sent: signed, and ending with CRLF as an SMTP client makes it."""
    header = dkim.sign(message, list(signers))
    return header + (message if message.endswith(b"\r\n") else message + b"\r\n")


def test_rsa_signature_verifies(dns, rsa_signer):
    message = signed(MESSAGE, rsa_signer)
    assert verify_all(message, dns) == [True]
    (tags,) = signature_tags(message)
    assert tags["a"] == "rsa-sha256"
    assert tags["c"] == "relaxed/relaxed"
    assert (tags["d"], tags["s"]) == ("shop.example", "pm2026")
    assert int(tags["t"]) > 0


def test_ed25519_signature_verifies(dns, ed_signer):
    message = signed(MESSAGE, ed_signer)
    assert verify_all(message, dns) == [True]
    assert signature_tags(message)[0]["a"] == "ed25519-sha256"


def test_rsa_then_ed25519_both_verify(dns, rsa_signer, ed_signer):
    message = signed(MESSAGE, rsa_signer, ed_signer)
    assert message.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert [t["a"] for t in signature_tags(message)] == ["rsa-sha256", "ed25519-sha256"]
    assert verify_all(message, dns) == [True, True]


def test_without_signers_nothing_is_added():
    assert dkim.sign(MESSAGE, []) == b""


def test_the_usual_headers_are_signed_and_from_is_oversigned(dns, rsa_signer):
    (tags,) = signature_tags(signed(MESSAGE, rsa_signer))
    names = [n.strip() for n in tags["h"].replace("\r\n", "").split(":")]
    assert names.count("from") == 2
    for name in ("to", "subject", "date", "message-id", "mime-version", "content-type"):
        assert names.count(name) == 1


def test_headers_sent_header_lines_stay_short(dns, rsa_signer):
    many = b"".join(b"References: <%d@x.example>\r\n" % i for i in range(30))
    header = dkim.sign(many + MESSAGE, [rsa_signer])
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))
    assert verify_all(header + many + MESSAGE, dns) == [True]


@pytest.mark.parametrize(
    "change",
    [
        lambda m: b"From: Mallory <m@evil.example>\r\n" + m,  # a second From, added on top
        lambda m: m.replace(b"From: Shop", b"From: Shap"),
        lambda m: m.replace(b"Subject: Your order", b"Subject: Your orders"),
        lambda m: m.replace(b"Thank you", b"Thank You"),
        lambda m: m + b"More.\r\n",
        lambda m: m.replace(b"Content-Type: text/plain", b"Content-Type: text/html"),
        lambda m: m.replace(b"To: a@one.example", b"To: b@one.example"),
    ],
    ids=["added-from", "from", "subject", "body", "appended-body", "content-type", "to"],
)
def test_a_change_in_transit_breaks_the_signature(dns, rsa_signer, ed_signer, change):
    header = dkim.sign(MESSAGE, [rsa_signer, ed_signer])
    assert verify_all(header + change(MESSAGE), dns) == [False, False]


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.replace(b"Subject: Your order", b"Subject:   Your \t order   "),
        lambda m: m.replace(b"Subject: Your order", b"SUBJECT: Your\r\n  order"),
        lambda m: m.replace(b"order.\r\n", b"order.   \r\n\r\n\r\n"),
        lambda m: m.replace(b"Thank you", b"Thank \t  you"),
        lambda m: b"Received: from somewhere\r\n" + m,  # an unsigned field added on top
        lambda m: m.replace(b"\r\n\r\n", b"\r\nX-Unsigned: anything\r\n\r\n", 1),
    ],
    ids=["header-wsp", "header-case-fold", "trailing-lines", "body-wsp", "received", "x-field"],
)
def test_relaxed_canonicalisation_tolerates_whitespace_changes(dns, rsa_signer, change):
    header = dkim.sign(MESSAGE, [rsa_signer])
    assert verify_all(header + change(MESSAGE), dns) == [True]


@pytest.mark.parametrize(
    "message",
    [
        # folded headers, with tabs and spaces
        b"From: Shop\r\n <orders@shop.example>\r\nTo: a@one.example,\r\n\tb@two.example,\r\n"
        b"   c@three.example\r\nSubject: a very\r\n long\r\n\t subject\r\n\r\nbody\r\n",
        # odd whitespace everywhere
        b"From:orders@shop.example\r\nSubject:\t \tspaced \t out\t \r\nTo:   a@one.example   \r\n"
        b"\r\n \t leading\r\ntrailing \t \r\n\t\r\n  \r\nin  the \t\t middle\r\n \r\n\r\n",
        # empty body, with and without the blank line
        b"From: orders@shop.example\r\nSubject: nothing\r\n\r\n",
        b"From: orders@shop.example\r\nSubject: nothing\r\n",
        b"From: orders@shop.example\r\nSubject: nothing\r\n\r\n\r\n\r\n",
        # a body that does not end with CRLF (SMTP clients add one)
        b"From: orders@shop.example\r\n\r\nno line end",
        b"From: orders@shop.example\r\n\r\nno line end  \t",
        # 8-bit headers and body
        "From: Café <orders@shop.example>\r\nSubject: Grüße, ça va ? 日本語\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nZürich\r\n\r\nnaïve  café\r\n".encode(),
        b"From: orders@shop.example\r\nSubject: latin-1 \xe9t\xe9\r\n\r\n\xff\xfe\x80 bytes\r\n",
        # repeated headers: every occurrence signed, bottom-up
        b"From: orders@shop.example\r\nTo: a@one.example\r\nSubject: one\r\nTo: b@two.example\r\n"
        b"References: <1@x>\r\nReferences: <2@x>\r\nReferences: <3@x>\r\n\r\nbody\r\n",
        # two From fields (both signed, plus one more)
        b"From: a@shop.example\r\nFrom: b@shop.example\r\nSubject: two\r\n\r\nbody\r\n",
        # no From at all: still over-signed against one being added
        b"Subject: anonymous\r\n\r\nbody\r\n",
        # a header value with a colon, an empty value
        b"From: orders@shop.example\r\nSubject: re: re: x\r\nCc:\r\n\r\nbody\r\n",
        # a body that looks like headers or the signature itself
        b"From: orders@shop.example\r\n\r\nDKIM-Signature: v=1; b=\r\n\r\nFrom: x\r\n",
        # a large body
        b"From: orders@shop.example\r\n\r\n" + b"line of text with  spaces \r\n" * 20000,
    ],
    ids=[
        "folded",
        "odd-wsp",
        "empty-body",
        "headers-only",
        "empty-lines-only",
        "no-final-crlf",
        "no-final-crlf-wsp",
        "utf8",
        "latin1",
        "repeated",
        "two-from",
        "no-from",
        "colons",
        "body-lookalike",
        "large",
    ],  # fmt: skip
)
def test_messages_of_every_shape_verify(dns, rsa_signer, ed_signer, message):
    assert verify_all(signed(message, rsa_signer, ed_signer), dns) == [True, True]


def test_a_second_from_breaks_a_message_that_had_none(dns, rsa_signer):
    message = b"Subject: anonymous\r\n\r\nbody\r\n"
    header = dkim.sign(message, [rsa_signer])
    assert verify_all(header + b"From: x@evil.example\r\n" + message, dns) == [False]


def test_a_wrong_published_key_fails(dns, rsa_signer):
    message = signed(MESSAGE, rsa_signer)
    dns.publish("pm2026._domainkey.shop.example", keys.txt_value("rsa", keys.generate("rsa")[1]))
    assert verify_all(message, dns) == [False]


def test_relaxed_body_hash_of_the_rfc_examples():
    # RFC 6376 §3.4.5 and errata: an empty body hashes as the empty string under relaxed.
    assert dkim.body_hash(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert dkim.relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert dkim.relaxed_body(b"\r\n\r\n") == b""
    assert dkim.relaxed_body(b"x\r\r\n") == b"x\r\r\n"
    assert dkim.relaxed_header(b"SubJect ", b" AbC\r\n\t d  ") == b"subject:AbC d\r\n"


def test_split_message():
    assert dkim.split_message(b"A: b\r\n\r\nbody") == (b"A: b", b"body")
    assert dkim.split_message(b"A: b\r\n") == (b"A: b", b"")
    assert dkim.split_message(b"\r\nbody") == (b"", b"body")


# --- keys (core.dkim_keys) ---------------------------------------------------------------------


@pytest.mark.fresh_dkim_keys
def test_rsa_record_publishes_the_subject_public_key_info_of_a_2048_bit_key():
    pem, public = keys.generate(keys.RSA)
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert keys.txt_value(keys.RSA, public) == f"k=rsa;p={public}"
    der = base64.b64decode(public)
    assert serialization.load_der_public_key(der).public_numbers() == (
        key.public_key().public_numbers()
    )
    assert key.key_size == 2048


def test_ed25519_record_publishes_the_raw_32_byte_key():
    pem, public = keys.generate(keys.ED25519)
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert keys.txt_value(keys.ED25519, public).startswith("k=ed25519;p=")
    assert base64.b64decode(public) == key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def test_other_kinds_of_key_are_refused():
    with pytest.raises(ValueError):
        dkim.Signer("shop.example", "s", ec.generate_private_key(ec.SECP256R1()))


def test_an_international_domain_signs_as_its_a_label(dns, ed_signer):
    signer = dkim.Signer("Bücher.example", "s1", ed_signer.key)
    assert signer.domain == "xn--bcher-kva.example"
    dns.publish(
        "s1._domainkey.xn--bcher-kva.example", dns.records["pm2026e._domainkey.shop.example"]
    )
    assert verify_all(signed(MESSAGE, signer), dns) == [True]
