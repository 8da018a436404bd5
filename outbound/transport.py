"""Where outbound mail goes: a smarthost, or the recipient domain's MX hosts (RFC 5321 §5)."""

import dataclasses
import urllib.parse

import dns.exception
import dns.resolver
from django.conf import settings


class DnsFailure(Exception):
    """The destination could not be looked up (temporary by Postmark's definition: DnsError)."""


@dataclasses.dataclass(frozen=True)
class Host:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: str = "opportunistic"  # "require", "opportunistic" or "never"
    username: str = ""
    password: str = ""

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}:{self.implicit_tls}:{self.starttls}:{self.username}"


def relay_from_url(url: str) -> Host:
    """``smtp://user:pass@host:port?starttls=require`` or ``…?tls=implicit``."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("smtp", "smtps") or not parsed.hostname:
        raise ValueError(
            f"OUTBOUND_SMTP_RELAY must look like smtp://user:pass@host:port, not {url!r}"
        )
    query = dict(urllib.parse.parse_qsl(parsed.query))
    implicit = parsed.scheme == "smtps" or query.get("tls") == "implicit"
    return Host(
        host=parsed.hostname,
        port=parsed.port or (465 if implicit else 25),
        implicit_tls=implicit,
        starttls=query.get("starttls", "opportunistic"),
        username=urllib.parse.unquote(parsed.username or ""),
        password=urllib.parse.unquote(parsed.password or ""),
    )


def destination_of(email: str) -> str:
    """What recipients are grouped by: the relay, or the domain whose MX hosts take them."""
    if settings.OUTBOUND_SMTP_RELAY or not settings.OUTBOUND_DIRECT_MX:
        return "relay"
    return email.rsplit("@", 1)[-1].lower()


def _resolver() -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=not settings.OUTBOUND_DNS_SERVERS)
    if settings.OUTBOUND_DNS_SERVERS:
        nameservers, port = [], 53
        for server in settings.OUTBOUND_DNS_SERVERS:
            host, _, maybe_port = (
                server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            )
            nameservers.append(host)
            port = int(maybe_port) if maybe_port else port
        resolver.nameservers = nameservers
        resolver.port = port
    resolver.lifetime = 10
    return resolver


def mx_hosts(domain: str) -> list[Host]:
    """The domain's MX hosts by preference; with no MX, the domain itself (the A fallback)."""
    resolver = _resolver()
    port = settings.OUTBOUND_MX_PORT
    try:
        answer = resolver.resolve(domain, "MX")
        records = sorted(answer, key=lambda r: r.preference)
        hosts = [str(r.exchange).rstrip(".") for r in records]
        if hosts == [""]:  # RFC 7505 null MX: the domain accepts no mail
            raise DnsFailure(f"{domain} publishes a null MX: it accepts no mail")
        return [Host(h, port) for h in hosts]
    except dns.resolver.NoAnswer:
        pass
    except dns.resolver.NXDOMAIN:
        raise DnsFailure(f"Host or domain name not found: {domain} (NXDOMAIN)") from None
    except dns.exception.DNSException as exc:
        raise DnsFailure(f"DNS lookup of MX for {domain} failed: {exc}") from None
    try:
        resolver.resolve(domain, "A")
    except dns.exception.DNSException as exc:
        raise DnsFailure(f"{domain} has no MX and no A record: {exc}") from None
    return [Host(domain, port)]


def address_of(host: str) -> str:
    """An MX host name resolved to an address through the configured resolver."""
    if settings.OUTBOUND_DNS_SERVERS:
        try:
            return str(_resolver().resolve(host, "A")[0])
        except dns.exception.DNSException as exc:
            raise DnsFailure(f"the mail host {host} does not resolve: {exc}") from None
    return host


def hosts_for(destination: str) -> list[Host]:
    if destination == "relay":
        if not settings.OUTBOUND_SMTP_RELAY:
            raise DnsFailure("no outbound transport: set OUTBOUND_SMTP_RELAY or OUTBOUND_DIRECT_MX")
        return [relay_from_url(settings.OUTBOUND_SMTP_RELAY)]
    return mx_hosts(destination)
