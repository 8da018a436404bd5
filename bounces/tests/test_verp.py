"""bounces.verp: the VERP return path and the MessageID read back from it."""

import re

import pytest

from bounces.verp import message_id_from_verp, verp_address

ID = "0f8e2a6c-3b1d-4c5e-9a7f-1d2c3b4a5e6f"


def test_verp_round_trip():
    address = verp_address(ID, "bounces.mailer.example")
    assert re.fullmatch(rf"pm_bounces\+{ID}\.[0-9a-f]{{10}}@bounces\.mailer\.example", address)
    assert message_id_from_verp(address) == ID
    assert verp_address(ID.upper(), "b.example") == verp_address(ID, "b.example")
    for form in (address.upper(), f"<{address}>", f"rfc822; {address}", f"Acme <{address}>"):
        assert message_id_from_verp(form) == ID


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
    ],
)
def test_message_id_from_verp_rejects(address):
    assert message_id_from_verp(address) == ""


def test_verp_address_rejects_bad_input():
    with pytest.raises(ValueError):
        verp_address("nope", "b.example")
    with pytest.raises(ValueError):
        verp_address(ID, "")
