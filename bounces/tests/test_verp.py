"""bounces.verp: the return path of each recipient's copy, and what it stands for read back."""

import re
import uuid

import pytest

from bounces.verp import (
    VERP_ADDRESS_RE,
    VERP_IN_TEXT_RE,
    Verp,
    message_id_from_verp,
    message_id_in,
    read_verp,
    verp_address,
)
from core import crypto

pytestmark = pytest.mark.no_db

ID = "0f8e2a6c-3b1d-4c5e-9a7f-1d2c3b4a5e6f"
HEX = uuid.UUID(ID).hex
OTHER = "5a1c9e3b-7d2f-4b6a-8c0e-2f4d6b8a0c1e"


def per_message(message_id: str = ID, domain: str = "bounces.mailer.example") -> str:
    """A return path as mail sent before they were per recipient has it."""
    return f"pm_bounces+{message_id}.{crypto.tag(b'verp', message_id, 10)}@{domain}"


def test_verp_round_trip():
    address = verp_address(ID, "bounces.mailer.example", 1234)
    assert re.fullmatch(
        rf"pm_bounces\+{HEX}\.ya\.[0-9a-f]{{10}}@bounces\.mailer\.example", address
    )  # 1234 is "ya" in base 36
    assert read_verp(address) == Verp(ID, 1234)
    assert message_id_from_verp(address) == ID
    assert verp_address(ID.upper(), "b.example", 7) == verp_address(ID, "b.example", 7)
    for form in (address.upper(), f"<{address}>", f"rfc822; {address}", f"Acme <{address}>"):
        assert read_verp(form) == Verp(ID, 1234)


def test_a_return_path_is_one_per_recipient_and_fits_a_local_part():
    addresses = {verp_address(ID, "b.example", n) for n in (1, 2, 3)}
    assert len(addresses) == 3
    longest = verp_address(ID, "b.example", 36**9 - 1)
    assert len(longest.split("@")[0]) == 64  # RFC 5321's limit on a local part
    assert read_verp(longest) == Verp(ID, 36**9 - 1)
    with pytest.raises(ValueError):
        verp_address(ID, "b.example", 36**9)


def test_a_per_message_return_path_of_mail_sent_before_is_still_read():
    assert read_verp(per_message()) == Verp(ID, None)
    assert message_id_from_verp(per_message().upper()) == ID


def swapped(address: str, **parts) -> str:
    """``address`` with its MessageID hex, recipient or tag replaced."""
    local, _, domain = address.partition("@")
    prefix, hex_id, recipient, tag = local.replace("+", ".", 1).split(".")
    values = {"hex_id": hex_id, "recipient": recipient, "tag": tag, **parts}
    return f"{prefix}+{values['hex_id']}.{values['recipient']}.{values['tag']}@{domain}"


GOOD = verp_address(ID, "bounces.mailer.example", 1234)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "pm_bounces@bounces.mailer.example",
        "pm_bounces+not-a-uuid@bounces.mailer.example",
        f"pm_bounces+{ID}x@bounces.mailer.example",
        f"pm_bounces+{ID}@bounces.mailer.example",  # no tag: not an address the service made
        f"pm_bounces+{ID}.0123456789@bounces.mailer.example",  # a forged tag
        f"bounces+{ID}@bounces.mailer.example",
        f"xpm_bounces+{ID}@bounces.mailer.example",
        f"pm_bounces+{ID}@",
        ID,
        f"pm_bounces+{HEX}.ya@bounces.mailer.example",  # no tag
        swapped(GOOD, recipient="yb"),  # another recipient, the same tag
        swapped(GOOD, recipient="0ya"),  # the same number, written otherwise
        swapped(GOOD, hex_id=uuid.UUID(OTHER).hex),  # another message
        swapped(GOOD, tag="0123456789"),
        swapped(
            GOOD, tag=per_message().split("@")[0].rsplit(".", 1)[1]
        ),  # the message's per-message tag
        per_message(OTHER).replace(OTHER, ID),  # another message's per-message tag
    ],
)
def test_message_id_from_verp_rejects(address):
    assert read_verp(address) is None
    assert message_id_from_verp(address) == ""


def test_verp_address_rejects_bad_input():
    for bad in (("nope", "b.example", 1), (ID, "", 1), (ID, "b.example", 0), (ID, "b", True)):
        with pytest.raises(ValueError):
            verp_address(*bad)


def test_return_paths_are_found_in_text_in_both_forms():
    for address in (GOOD, per_message(), f"pm_bounces+{ID}@bounces.mailer.example"):
        text = f"X-Original-To: <{address.upper()}>"
        assert message_id_in(VERP_ADDRESS_RE.search(text)) == ID
        assert message_id_in(VERP_IN_TEXT_RE.search(text.encode())) == ID
