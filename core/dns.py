"""The process's DNS resolvers: dnspython ``Resolver`` objects, each built once and shared.

Every look-up goes through the name servers of ``OUTBOUND_DNS_SERVERS`` (``host`` or
``host:port``; one port for all) when set, else the system's. ``resolver()`` keeps answers in an
LRU cache for their TTL (delivery: a busy domain's MX hosts are looked up once per TTL, not once
per message); ``resolver(cached=False)`` keeps none, for domain verification, which must see a
record the moment it is published. A resolver is built on first use (reading the system's
configuration is not free) and kept for the process; a change of ``OUTBOUND_DNS_SERVERS``
(tests' ``settings`` fixture, ``override_settings``) or ``reset()`` drops them.
"""

import threading

import dns.resolver
from django.conf import settings
from django.core.signals import setting_changed

LIFETIME = 10.0  # seconds one look-up may take in all (delivery's; verification passes its own)
CACHE_SIZE = 10_000  # answers kept by a cached resolver

_resolvers: dict[tuple, dns.resolver.Resolver] = {}
_lock = threading.Lock()


def resolver(*, cached: bool = True, lifetime: float = LIFETIME) -> dns.resolver.Resolver:
    """The shared resolver for the configured name servers, with an LRU cache unless
    ``cached`` is false; each look-up gives up after ``lifetime`` seconds."""
    servers = tuple(settings.OUTBOUND_DNS_SERVERS or ())
    key = (servers, cached, float(lifetime))
    found = _resolvers.get(key)
    if found is None:
        with _lock:
            found = _resolvers.get(key)
            if found is None:
                found = _resolvers[key] = _build(servers, cached, float(lifetime))
    return found


def _build(servers: tuple[str, ...], cached: bool, lifetime: float) -> dns.resolver.Resolver:
    built = dns.resolver.Resolver(configure=not servers)
    if servers:
        nameservers, port = [], 53
        for server in servers:
            host, _, maybe_port = (
                server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            )
            nameservers.append(host)
            port = int(maybe_port) if maybe_port else port
        built.nameservers = nameservers
        built.port = port
    built.lifetime = lifetime
    if cached:
        built.cache = dns.resolver.LRUCache(CACHE_SIZE)
    return built


def reset() -> None:
    """Forget the resolvers (and their cached answers): the next look-up builds them again."""
    with _lock:
        _resolvers.clear()


def _settings_changed(setting, **kwargs) -> None:
    if setting == "OUTBOUND_DNS_SERVERS":
        reset()


setting_changed.connect(_settings_changed, dispatch_uid="core-dns-settings-changed")
