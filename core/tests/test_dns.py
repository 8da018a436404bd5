"""The process's DNS resolvers (core.dns): built once, shared, cached for delivery and not
for verification, rebuilt when the name servers change."""

import threading

import dns.resolver
import pytest

import core.dns
from delivery import transport
from delivery.tests.sinks import DnsServer

pytestmark = pytest.mark.no_db


@pytest.fixture
def dns_server(settings):
    with DnsServer({("a.test", "A"): ["192.0.2.1"]}) as server:
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{server.port}"]
        yield server


def test_the_resolver_is_built_once_and_shared(settings, monkeypatch):
    settings.OUTBOUND_DNS_SERVERS = ["127.0.0.1:5353"]
    built = []
    build = core.dns._build
    monkeypatch.setattr(core.dns, "_build", lambda *a: built.append(a) or build(*a))
    found = []
    threads = [threading.Thread(target=lambda: found.append(core.dns.resolver())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and all(r is found[0] for r in found)
    resolver = core.dns.resolver()
    assert resolver is found[0]
    assert isinstance(resolver.cache, dns.resolver.LRUCache)
    assert (resolver.nameservers, resolver.port, resolver.lifetime) == (["127.0.0.1"], 5353, 10.0)


def test_verification_gets_one_without_a_cache(settings):
    settings.OUTBOUND_DNS_SERVERS = ["127.0.0.1"]
    fresh = core.dns.resolver(cached=False, lifetime=2.5)
    assert fresh is core.dns.resolver(cached=False, lifetime=2.5)
    assert fresh is not core.dns.resolver()
    assert fresh.cache is None and fresh.lifetime == 2.5 and fresh.port == 53


def test_a_change_of_name_servers_builds_it_again(settings):
    settings.OUTBOUND_DNS_SERVERS = ["127.0.0.1:5353"]
    first = core.dns.resolver()
    settings.OUTBOUND_DNS_SERVERS = ["127.0.0.2:5354"]
    second = core.dns.resolver()
    assert second is not first and second.nameservers == ["127.0.0.2"]
    core.dns.reset()
    assert core.dns.resolver() is not second


def test_answers_are_cached_for_delivery_and_not_for_verification(dns_server):
    def looked_up(resolver):
        return [str(r) for r in resolver.resolve("a.test", "A")]

    assert looked_up(core.dns.resolver()) == ["192.0.2.1"]
    dns_server.set("a.test", "A", ["192.0.2.2"])
    assert looked_up(core.dns.resolver()) == ["192.0.2.1"]  # for its TTL
    assert looked_up(core.dns.resolver(cached=False)) == ["192.0.2.2"]


def test_tests_may_replace_the_resolver(monkeypatch, settings):
    settings.OUTBOUND_DNS_SERVERS = ["127.0.0.1"]
    settings.OUTBOUND_MX_PORT = 2525

    class Answer:
        preference = 10
        exchange = "mx.shop.test."

    class Fake:
        def resolve(self, name, rtype, **kwargs):
            assert (name, rtype) == ("shop.test", "MX")
            return [Answer()]

    monkeypatch.setattr(core.dns, "resolver", lambda **kwargs: Fake())
    assert transport.mx_hosts("shop.test") == [transport.Host("mx.shop.test", 2525)]
