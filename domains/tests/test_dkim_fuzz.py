"""Generated messages (any header fields and values, folds, 8-bit bytes, whitespace runs, empty
and trailing lines) signed with RSA and Ed25519: dkimpy verifies both signatures, and a changed
body fails them.

A bounded number of examples runs in ``make test``; ``make fuzz`` runs many more
(``FUZZ_EXAMPLES``)."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import dkim
from core import dkim_keys as keys
from domains.tests.dkim_verify import PublishedKeys, new_signer, verify_all

pytestmark = [pytest.mark.fuzz, pytest.mark.no_db]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))

DNS = PublishedKeys()
RSA = new_signer("fuzz.example", "r", keys.RSA, DNS)
ED = new_signer("fuzz.example", "e", keys.ED25519, DNS)

NAMES = [n.encode() for n in dkim.SIGNED_HEADERS] + [
    b"From", b"TO", b"Subject", b"X-Custom", b"Received", b"X-PM-Tag", b"Content-Type",
]  # fmt: skip
WSP = st.sampled_from([b" ", b"\t", b"  ", b" \t ", b""])
# Header values: any bytes but CR and LF; VT and FF are left out because they are not WSP for
# RFC 6376 but dkimpy strips them from the ends of a value.
value_bytes = st.binary(max_size=60).map(lambda b: bytes(c for c in b if c not in b"\r\n\x0b\x0c"))
line_bytes = st.binary(max_size=80).map(lambda b: bytes(c for c in b if c not in b"\r\n"))


@st.composite
def field(draw):
    name = draw(st.sampled_from(NAMES))
    pieces = draw(st.lists(value_bytes, min_size=1, max_size=3))
    value = b""
    for i, piece in enumerate(pieces):
        if i:  # a fold: CRLF then at least one WSP
            value += b"\r\n" + draw(st.sampled_from([b" ", b"\t", b"  \t"]))
        value += piece
    return name + b":" + draw(WSP) + value + draw(WSP)


@st.composite
def message(draw):
    fields = draw(st.lists(field(), max_size=12))
    lines = draw(st.lists(st.tuples(WSP, line_bytes, WSP), max_size=12))
    body = b"\r\n".join(lead + text + trail for lead, text, trail in lines)
    body += draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\r\n \r\n\t\r\n"]))
    header = b"".join(f + b"\r\n" for f in fields)
    return header + b"\r\n" + body


@given(message())
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_message_signs_and_verifies(raw):
    sent = raw if raw.endswith(b"\r\n") else raw + b"\r\n"  # as an SMTP client sends it
    header = dkim.sign(raw, [RSA, ED])
    assert verify_all(header + sent, DNS) == [True, True]
    assert verify_all(header + sent + b"tampered\r\n", DNS) == [False, False]
