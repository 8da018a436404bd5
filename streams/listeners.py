"""Listener specifications: ``KIND[+proxy][+tls]=HOST:PORT`` (SMTP_LISTEN, ``runsmtp
--listen``), read by the gateway to listen and by the server page to tell clients where to dial
(``smtp_endpoints``)."""

import ipaddress
from dataclasses import dataclass, field

from django.conf import settings

KINDS = ("transactional", "broadcast", "bounce", "inbound")


@dataclass
class Listener:
    endpoint: str  # one of KINDS
    host: str
    port: int
    implicit_tls: bool = False
    proxy: bool = False  # a PROXY protocol header (v1 or v2) from a trusted balancer comes first

    def __str__(self):
        flags = ("+proxy" if self.proxy else "") + ("+tls" if self.implicit_tls else "")
        return f"{self.endpoint}{flags}={self.host}:{self.port}"

    @classmethod
    def parse(cls, spec: str) -> "Listener":
        """``KIND[+proxy][+tls]=HOST:PORT``, e.g. ``transactional=0.0.0.0:587``,
        ``broadcast+tls=:465``, ``transactional+proxy+tls=10.0.0.5:465``."""
        try:
            kind, address = spec.strip().split("=", 1)
            host, port = address.rsplit(":", 1)
            kind, *flags = kind.split("+")
            if kind not in KINDS or len(set(flags)) != len(flags):
                raise ValueError
            if not set(flags) <= {"tls", "proxy"}:
                raise ValueError
            return cls(
                kind,
                host.strip("[]") or "0.0.0.0",  # noqa: S104
                int(port),
                "tls" in flags,
                "proxy" in flags,
            )
        except ValueError:
            raise ValueError(
                f"bad listener {spec!r}: use KIND[+proxy][+tls]=HOST:PORT with KIND "
                "transactional, broadcast, bounce or inbound, e.g. transactional=127.0.0.1:2525"
            ) from None


# --- Where clients dial: the server page shows these ---------------------------------------------


@dataclass
class Endpoint:
    kind: str  # "transactional" | "broadcast"
    host: str
    starttls_ports: list[int] = field(default_factory=list)
    tls_ports: list[int] = field(default_factory=list)

    @property
    def example_port(self) -> int | str:
        ports = self.starttls_ports or self.tls_ports
        return ports[0] if ports else ""

    @property
    def label(self) -> str:
        return "Transactional" if self.kind == "transactional" else "Broadcast"


def shared_addresses(listeners: list[Listener]) -> list[str]:
    """The ``HOST:PORT`` of listeners that would share a port: the same address twice, or a
    wildcard host and any other on the same port."""
    shared = []
    for i, listener in enumerate(listeners):
        for other in listeners[i + 1 :]:
            same_host = (
                listener.host == other.host or _wildcard(listener.host) or _wildcard(other.host)
            )
            if listener.port == other.port and same_host:
                shared.append(f"{other.host}:{other.port}")
    return sorted(set(shared))


def smtp_endpoints(request_host: str = "") -> list[Endpoint]:
    """The gateway's endpoints as a client should dial them.

    Ports come from ``SMTP_LISTEN`` (``KIND[+tls]=HOST:PORT``). Host names come from the optional
    settings ``SMTP_PUBLIC_HOST`` (transactional) and ``SMTP_PUBLIC_BROADCAST_HOST`` (broadcast;
    defaults to the transactional one), then ``SMTP_HOSTNAME``, then the listening address unless
    it is a wildcard, then the host name this page was requested under.
    """
    public = {
        "transactional": getattr(settings, "SMTP_PUBLIC_HOST", "") or "",
        "broadcast": getattr(settings, "SMTP_PUBLIC_BROADCAST_HOST", "")
        or getattr(settings, "SMTP_PUBLIC_HOST", "")
        or "",
    }
    fallback = getattr(settings, "SMTP_HOSTNAME", "") or ""
    found: dict[str, Endpoint] = {}
    for spec in getattr(settings, "SMTP_LISTEN", []) or []:
        try:
            listener = Listener.parse(spec)
        except ValueError:
            continue
        kind, host = listener.endpoint, listener.host
        if kind not in public:  # the bounce and inbound MXes are not for clients
            continue
        listen_host = "" if _wildcard(host) else host
        endpoint = found.setdefault(
            kind,
            Endpoint(kind, public[kind] or fallback or listen_host or request_host or host),
        )
        ports = endpoint.tls_ports if listener.implicit_tls else endpoint.starttls_ports
        if listener.port not in ports:
            ports.append(listener.port)
    order = {"transactional": 0, "broadcast": 1}
    return sorted(found.values(), key=lambda e: order.get(e.kind, 2))


def _wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host in ("", "*")


AUTH_METHODS = (
    ("CRAM-MD5", True,
     "The secret never crosses the wire: the client answers a challenge with an HMAC. The service "
     "must keep the secret retrievable (here: encrypted at rest under SECRETS_KEY)."),
    ("DIGEST-MD5", True,
     "Challenge-response (RFC 2831) like CRAM-MD5: no secret on the wire, but the service must "
     "keep password-equivalent material (the encrypted secret) to check it."),
    ("PLAIN", False,
     "Sends the user name and secret in clear (base64 is not encryption). Use it only after "
     "STARTTLS or on an implicit-TLS port."),
    ("LOGIN", False,
     "Like PLAIN, the secret travels in clear unless TLS is on. Supported for older clients."),
)  # fmt: skip


def smtp_limits() -> dict:
    return {
        "max_size_mb": round(getattr(settings, "SMTP_MAX_MESSAGE_SIZE", 10485760) / 1048576, 1),
        "max_recipients": getattr(settings, "SMTP_MAX_RECIPIENTS", 50),
        "plain_requires_tls": getattr(settings, "SMTP_REQUIRE_TLS_FOR_PLAIN_AUTH", False),
    }
