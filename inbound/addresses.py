"""Which server an inbound recipient belongs to.

A server's inbound address is ``<InboundHash>@INBOUND_DOMAIN``, with plus-addressing
(``<hash>+<MailboxHash>@…``); a server with an ``InboundDomain`` also takes every local part at
that domain (``anything+<MailboxHash>@its.domain``). Letter case never matters. Anything else
belongs to no server: the inbound MX refuses it at RCPT, so it never accepts what it cannot place.
"""

import re
from dataclasses import dataclass

from django.conf import settings

from core.addresses import InvalidDomain, ascii_domain
from servers.models import Server
from streams.models import MessageStream, StreamType

HASH_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Placement:
    """Where an inbound recipient goes: the server, its inbound stream, the MailboxHash."""

    server_id: int
    server_name: str
    stream_pk: int
    stream_id: str
    mailbox_hash: str
    key: str  # the inbound hash or the inbound domain that matched (safe to log)


def inbound_domain() -> str:
    """INBOUND_DOMAIN as addresses are compared (lower case, IDNA A-labels)."""
    try:
        return ascii_domain(settings.INBOUND_DOMAIN)
    except InvalidDomain:
        return settings.INBOUND_DOMAIN.strip().lower()


def inbound_address(server: Server) -> str:
    return f"{server.inbound_hash}@{settings.INBOUND_DOMAIN}"


def split(address: str) -> tuple[str, str, str]:
    """``Hash+Box@Host.Example`` → (``Hash``, ``Box``, ``host.example``); the domain in its
    compared form, '' when it is not a domain name."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    base, _, box = local.partition("+")
    try:
        domain = ascii_domain(domain) if domain else ""
    except InvalidDomain:
        domain = ""
    return base, box, domain


def mailbox_hash(address: str) -> str:
    """The text after the first ``+`` of the local part, '' when there is none."""
    return split(address)[1]


def place(address: str) -> Placement | None:
    """The server (and its inbound stream) that ``address`` belongs to, or None."""
    base, box, domain = split(address)
    if not base or not domain:
        return None
    servers = Server.objects.all()
    if domain == inbound_domain():
        key = base.lower()
        if not HASH_RE.fullmatch(key):
            return None
        servers = servers.filter(inbound_hash=key)
    else:
        key = domain
        servers = servers.filter(inbound_domain__in={domain, _unicode(domain)})
    server = servers.only("pk", "name").first()
    if server is None:
        return None
    stream = (
        MessageStream.objects.filter(
            server=server, message_stream_type=StreamType.INBOUND, archived_at__isnull=True
        )
        .only("pk", "stream_id")
        .order_by("pk")
        .first()
    )
    if stream is None:
        return None
    return Placement(server.pk, server.name, stream.pk, stream.stream_id, box, key)


def _unicode(domain: str) -> str:
    """An InboundDomain may be stored as typed (U-labels); compare both forms."""
    try:
        return domain.encode("ascii").decode("idna")
    except UnicodeError:
        return domain
