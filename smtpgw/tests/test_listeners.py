"""Listener addresses: two listeners on one port would both bind (the gateway's processes share
their ports) and split that port's connections between them, so runsmtp refuses it."""

import pytest
from django.core.management import CommandError, call_command

from streams.listeners import Listener, shared_addresses

pytestmark = pytest.mark.no_db


def listeners(*specs):
    return [Listener.parse(spec) for spec in specs]


def test_distinct_addresses_share_nothing():
    assert shared_addresses(listeners("transactional=127.0.0.1:2525", "broadcast=127.0.0.1:2526",
                                      "transactional=127.0.0.2:2525")) == []  # fmt: skip


@pytest.mark.parametrize(
    "specs",
    [
        ("transactional=127.0.0.1:2525", "transactional+tls=127.0.0.1:2525"),
        ("transactional=:2525", "broadcast=127.0.0.1:2525"),  # a wildcard takes every address
        ("transactional=127.0.0.1:2525", "bounce=0.0.0.0:2525"),
    ],
)
def test_listeners_on_one_port_are_found(specs):
    assert shared_addresses(listeners(*specs))


def test_runsmtp_refuses_two_listeners_on_one_address():
    with pytest.raises(CommandError, match="Two listeners on 127.0.0.1:2599"):
        call_command("runsmtp", "--listen", "transactional=127.0.0.1:2599",
                     "--listen", "transactional+tls=127.0.0.1:2599")  # fmt: skip
