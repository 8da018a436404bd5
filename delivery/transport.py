"""Where outbound mail goes: a smarthost, or the recipient domain's MX hosts (RFC 5321 §5) and
their addresses (AAAA and A), and how a recipient's address is written in the envelope (RFC 6531).
Look-ups go through ``core.dns``'s cached resolver: a domain's MX hosts and their addresses are
asked for once per TTL, not once per message."""

import dataclasses
import ipaddress
import urllib.parse

import dns.exception
import dns.resolver
from django.conf import settings

import core.dns
from core.addresses import InvalidDomain, ascii_domain


class DnsFailure(Exception):
    """The destination could not be looked up (temporary by Postmark's definition: DnsError)."""


class PermanentDnsFailure(DnsFailure):
    """The domain does not exist (NXDOMAIN) or publishes a null MX (RFC 7505): it will never
    take mail, so its recipients bounce at once. ``status`` is the enhanced status code that
    says so (5.1.2 bad destination system, 5.1.10 null MX)."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status


class UnsendableAddress(ValueError):
    """An address no SMTP command can carry (control characters, spaces, angle brackets, no
    domain, a domain that is not a valid IDN)."""


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


def _ascii_domain(domain: str) -> str:
    """The domain as DNS and a plain-ASCII envelope carry it (``core.addresses``): IDN labels
    become A-labels (``bücher.example`` → ``xn--bcher-kva.example``). UnsendableAddress when it
    cannot."""
    try:
        return ascii_domain(domain)
    except InvalidDomain as exc:
        raise UnsendableAddress(str(exc)) from None


_FORBIDDEN = frozenset(chr(c) for c in range(33)) | {"\x7f", "<", ">"}


def envelope_address(email: str) -> tuple[str, bool]:
    """The address as RCPT TO carries it, and whether that needs SMTPUTF8 (RFC 6531).

    ASCII addresses go as they are. A non-ASCII domain behind an ASCII local part goes as
    A-labels, which any server takes; a non-ASCII local part can only go in UTF-8, to a server
    that offers SMTPUTF8. UnsendableAddress for what no SMTP command can carry."""
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain.strip("."):
        raise UnsendableAddress(f"{email!r} is not an address: it needs a local part and a domain")
    if any(c in _FORBIDDEN for c in email):
        raise UnsendableAddress(
            f"{email!r} holds a character no SMTP command can carry (control, space, < or >)"
        )
    try:
        email.encode("utf-8")
    except UnicodeError:
        raise UnsendableAddress(f"{email!r} is not valid Unicode text") from None
    ascii_host = _ascii_domain(domain)  # checks the domain, whichever way it is written
    if email.isascii():
        return email, False
    if local.isascii():
        return f"{local}@{ascii_host}", False
    return email, True


def destination_of(email: str) -> str:
    """What recipients are grouped by: the relay, or the domain whose MX hosts take them."""
    if settings.OUTBOUND_SMTP_RELAY or not settings.OUTBOUND_DIRECT_MX:
        return "relay"
    return _ascii_domain(email.rsplit("@", 1)[-1])


def _not_found(domain: str) -> PermanentDnsFailure:
    return PermanentDnsFailure(
        f"Host or domain name not found: {domain} does not exist (NXDOMAIN)", "5.1.2"
    )


def mx_hosts(domain: str) -> list[Host]:
    """The domain's MX hosts by preference; with no MX, the domain itself (the implicit MX).

    PermanentDnsFailure when the domain does not exist or publishes a null MX; DnsFailure when
    the look-up failed (a time-out, SERVFAIL), which is worth trying again later."""
    resolver = core.dns.resolver()
    port = settings.OUTBOUND_MX_PORT
    try:
        answer = resolver.resolve(domain, "MX")
        records = sorted(answer, key=lambda r: r.preference)
        # "." is the null MX (RFC 7505): alone, the domain accepts no mail; beside real MX
        # records (a misconfiguration) it is skipped.
        hosts = [h for h in (str(r.exchange).rstrip(".") for r in records) if h]
        if not hosts:
            raise PermanentDnsFailure(
                f"{domain} publishes a null MX (RFC 7505): the domain accepts no mail", "5.1.10"
            )
        return [Host(h, port) for h in hosts]
    except dns.resolver.NoAnswer:
        pass
    except dns.resolver.NXDOMAIN:
        raise _not_found(domain) from None
    except dns.exception.DNSException as exc:
        raise DnsFailure(f"DNS lookup of MX for {domain} failed: {exc}") from None
    try:
        resolver.resolve_name(domain)  # the implicit MX (RFC 5321 §5.1): an AAAA or an A record
    except dns.resolver.NXDOMAIN:
        raise _not_found(domain) from None
    except dns.exception.DNSException as exc:
        raise DnsFailure(f"{domain} has no MX and no AAAA or A record: {exc}") from None
    return [Host(domain, port)]


def addresses_of(host: str) -> list[str]:
    """What to connect to for a mail host, in the order to try: an IP address as it is; through
    the configured name servers (OUTBOUND_DNS_SERVERS), its AAAA then its A records (cached for
    their TTL); otherwise its name, which the system's resolver turns into addresses at connect
    time (AAAA and A, RFC 6724's order, /etc/hosts)."""
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    if not settings.OUTBOUND_DNS_SERVERS:
        return [host]
    try:
        return list(core.dns.resolver().resolve_name(host).addresses())
    except dns.exception.DNSException as exc:
        raise DnsFailure(f"the mail host {host} does not resolve: {exc}") from None


def hosts_for(destination: str) -> list[Host]:
    if destination == "relay":
        if not settings.OUTBOUND_SMTP_RELAY:
            raise DnsFailure("no outbound transport: set OUTBOUND_SMTP_RELAY or OUTBOUND_DIRECT_MX")
        return [relay_from_url(settings.OUTBOUND_SMTP_RELAY)]
    return mx_hosts(destination)
