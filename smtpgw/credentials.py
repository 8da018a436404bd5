"""Who may send: SMTP credentials looked up by user name, and IP credentials by client address.

These are plain blocking functions (they query the database); the gateway runs them in a thread
pool. Results are cached for ``SMTP_AUTH_CACHE_SECONDS`` so that a client that connects and
authenticates for every message does not cost a query each time; switching SMTP off or revoking a
token takes effect within that time.
"""

import ipaddress
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from inbound.addresses import place
from messages.bounce_intake import message_for_bounce_address
from servers.models import AccountToken, ServerToken
from streams.models import CredentialKind, Endpoint, IpCredential, SmtpToken
from streams.services import sending_refusal

BAD_CREDENTIALS = "535 5.7.8 Authentication credentials invalid"
SMTP_DISABLED = (
    "535 5.7.8 SMTP access is disabled for this server: switch it on in the server's settings"
)
ACCOUNT_TOKEN = (
    "535 5.7.8 This looks like an account token: use a server API token (or an SMTP token) "
    "as user name and password"
)
TOKEN_REVOKED = "535 5.7.8 This SMTP token has been revoked: generate a new one"


def username_label(username: str) -> str:
    """What logs may show of an SMTP user name, which may be a server token (a secret): its
    length and, when long enough that they reveal little, its last four characters."""
    if len(username) < 16:
        return f"({len(username)} characters)"
    return f"…{username[-4:]}"


@dataclass(frozen=True)
class Identity:
    """What an authenticated session may do: send for one server (and maybe one stream)."""

    kind: str
    server_id: int
    server_name: str
    stream_pk: int | None = None
    stream_id: str = ""
    stream_type: str = ""
    credential: str = ""  # safe to log and store: access key, CIDR or a token's last characters
    strict: bool = False  # the server's strict mode: refuse in-session what processing would

    def label(self) -> str:
        return f"{self.kind}:{self.credential}"


@dataclass(frozen=True)
class Credential:
    """The password-equivalent secret for a user name, and what it grants once verified.

    ``refusal`` is the 535 reply to give when the secret verifies but sending is not allowed
    (SMTP switched off, revoked token, account token): users learn why only once they have proved
    they hold the secret.
    """

    secret: str
    identity: Identity | None
    refusal: str = ""


def _lookup(username: str) -> Credential | None:
    server_token = ServerToken.find(username)
    if server_token is not None:
        server = server_token.server
        identity = Identity(
            kind=CredentialKind.SERVER_TOKEN,
            server_id=server.id,
            server_name=server.name,
            credential="…" + username[-4:],
            strict=server.strict_smtp,
        )
        refusal = "" if server.smtp_api_activated else SMTP_DISABLED
        return Credential(secret=username, identity=identity, refusal=refusal)

    token = (
        SmtpToken.objects.select_related("stream__server").filter(access_key=username).first()
        if username
        else None
    )
    if token is not None:
        stream = token.stream
        identity = Identity(
            kind=CredentialKind.SMTP_TOKEN,
            server_id=stream.server_id,
            server_name=stream.server.name,
            stream_pk=stream.pk,
            stream_id=stream.stream_id,
            stream_type=stream.message_stream_type,
            credential=token.access_key,
            strict=stream.server.strict_smtp,
        )
        refusal = ""
        if token.revoked:
            refusal = TOKEN_REVOKED
        elif not stream.server.smtp_api_activated:
            refusal = SMTP_DISABLED
        return Credential(secret=token.secret, identity=identity, refusal=refusal)

    if AccountToken.find(username) is not None:
        return Credential(secret=username, identity=None, refusal=ACCOUNT_TOKEN)
    return None


_cache: dict[str, tuple[float, Credential | None]] = {}
MISS = object()


def cached(username: str):
    """The cached credential for a user name (None: known not to exist), or MISS. Cheap enough
    for the event loop; a miss is looked up in the thread pool."""
    hit = _cache.get(username)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    return MISS


def lookup(username: str) -> Credential | None:
    """The credential for an SMTP user name, or None when there is none."""
    ttl = settings.SMTP_AUTH_CACHE_SECONDS
    now = time.monotonic()
    if ttl > 0:
        hit = _cache.get(username)
        if hit is not None and hit[0] > now:
            return hit[1]
    credential = _lookup(username)
    if ttl > 0:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[username] = (now + ttl, credential)
    return credential


def clear_cache() -> None:
    _cache.clear()
    _ip_networks.cache_clear()


@lru_cache(maxsize=1)
def _ip_networks(_epoch: int) -> list[tuple[ipaddress._BaseNetwork, Identity]]:
    rows = IpCredential.objects.select_related("stream__server").filter(revoked_at__isnull=True)
    networks = []
    for row in rows:
        stream = row.stream
        if not stream.server.smtp_api_activated:
            continue
        identity = Identity(
            kind=CredentialKind.IP,
            server_id=stream.server_id,
            server_name=stream.server.name,
            stream_pk=stream.pk,
            stream_id=stream.stream_id,
            stream_type=stream.message_stream_type,
            credential=row.cidr,
            strict=stream.server.strict_smtp,
        )
        networks.append((ipaddress.ip_network(row.cidr, strict=False), identity))
    # The most specific network wins.
    networks.sort(key=lambda pair: pair[0].prefixlen, reverse=True)
    return networks


def identity_for_address(address: str) -> Identity | None:
    """The IP credential covering a client address, if an operator configured one."""
    ttl = max(settings.SMTP_AUTH_CACHE_SECONDS, 0.001)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    epoch = int(time.monotonic() / ttl) if settings.SMTP_AUTH_CACHE_SECONDS > 0 else time.time_ns()
    for network, identity in _ip_networks(epoch):
        if ip.version == network.version and ip in network:
            return identity
    return None


def identity_for_verp(address: str) -> Identity | None:
    """For the bounce MX: the message behind a VERP address (of BOUNCE_DOMAIN or a verified
    custom Return-Path domain), as an identity of its server and stream; None for any other."""
    found = message_for_bounce_address(address)
    if found is None:
        return None
    return Identity(
        kind=CredentialKind.VERP,
        server_id=found.server_id,
        server_name=found.server_name,
        stream_pk=found.stream_pk,
        stream_id=found.stream_id,
        credential=found.reference,  # the message, and the recipient whose return path it is
    )


def identity_for_inbound(address: str) -> Identity | None:
    """For the inbound MX: the server (and its inbound stream) an inbound recipient belongs to
    (``inbound.addresses``), as an identity; None for any other address."""
    found = place(address)
    if found is None:
        return None
    return Identity(
        kind=CredentialKind.INBOUND,
        server_id=found.server_id,
        server_name=found.server_name,
        stream_pk=found.stream_pk,
        stream_id=found.stream_id,
        credential=found.key[:64],  # the inbound hash, or the server's InboundDomain
    )


def endpoint_refusal(identity: Identity, endpoint: str) -> str:
    """The reply refusing a stream-bound credential at the other kind of endpoint, or ''."""
    if not identity.stream_type or endpoint == Endpoint.BOUNCE:
        return ""  # server token: the stream comes later, from X-PM-Message-Stream
    refusal = sending_refusal(identity.stream_type, identity.stream_id, endpoint)
    return f"550 5.7.1 {refusal}" if refusal else ""
