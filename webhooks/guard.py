"""The SSRF guard for webhook URLs, and the checks of what a webhook is configured with.

A URL whose host resolves to a private, loopback, link-local, multicast, reserved or unspecified
address is refused when the webhook is configured (``check_url``, from the API and the admin) and
again when it is posted to (``checked_addresses``: ``webhooks.client`` connects to the address
that was checked, with the original Host header and TLS server name), unless
``WEBHOOK_ALLOW_PRIVATE_URLS`` is on. Also here: credentials given in a URL (``split_credentials``)
and a webhook's custom headers (``validate_headers``, ``FORBIDDEN_HEADERS``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from django.conf import settings

from core.addresses import InvalidDomain, ascii_domain
from webhooks.models import Webhook


def allow_private() -> bool:
    return bool(getattr(settings, "WEBHOOK_ALLOW_PRIVATE_URLS", False))


# --- URLs and the SSRF guard ----------------------------------------------------------------------


# A webhook URL is stored in a column of this size; a host name has at most 253 characters.
MAX_URL_LENGTH = Webhook._meta.get_field("url").max_length
MAX_HOST_LENGTH = 253
# Control characters (NUL included) and lone surrogates: never part of a URL that can be sent.
_UNSENDABLE_RE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class UnsafeUrl(ValueError):
    """A webhook URL that is refused; ``message`` says why, for the API and the admin."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def split_credentials(url: str) -> tuple[str, str, str]:
    """``https://user:pass@host/x`` → (``https://host/x``, ``user``, ``pass``). A URL that cannot
    even be split comes back as given, for ``check_url`` to refuse with its reason."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip(), "", ""
    if "@" not in parts.netloc:
        return url.strip(), "", ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, unquote(user), unquote(password)


def address_refused(address: str) -> str | None:
    """Why an IP address may not be a webhook destination, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            why = address_refused(str(embedded))
            if why:
                return why
    for flag in (
        "is_loopback",
        "is_private",
        "is_link_local",
        "is_multicast",
        "is_reserved",
        "is_unspecified",
        "is_site_local",
    ):
        if getattr(ip, flag, False):
            return flag[3:].replace("_", "-")
    if not ip.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line


def _shown(url: str) -> str:
    return url if len(url) <= 200 else url[:200] + "…"


def parse_url(url: str) -> Target:
    """The target of an http(s) URL with a valid host name; raises ``UnsafeUrl`` otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"The webhook URL must not be longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"The webhook URL '{_shown(url)}' is not a valid URL ({exc}).") from None
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise UnsafeUrl(f"The webhook URL '{_shown(url)}' must start with http:// or https://.")
    host = parts.hostname or ""
    if not host:
        raise UnsafeUrl(f"The webhook URL '{_shown(url)}' has no host name.")
    if any(c.isspace() for c in url):
        raise UnsafeUrl(f"The webhook URL '{_shown(url)}' contains white space.")
    if _UNSENDABLE_RE.search(url):
        raise UnsafeUrl(
            f"The webhook URL '{_shown(url)}' contains a control character (e.g. NUL) or a lone "
            "surrogate."
        )
    host = _check_host(host)
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def _check_host(host: str) -> str:
    """The host as it is looked up: an IP literal as it is, a name in its ASCII form
    (``core.addresses.ascii_domain``, IDNA 2008, the same form mail is routed by). Refuses a name
    that cannot be looked up at all: an empty label, a label over 63 characters, a character IDNA
    forbids, or a name over MAX_HOST_LENGTH."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return host
    try:
        encoded = ascii_domain(host)
    except InvalidDomain:
        encoded = ""
    if not encoded or len(encoded) > MAX_HOST_LENGTH:
        raise UnsafeUrl(
            f"The webhook URL's host name '{_shown(host)}' is not a valid host name: each part "
            f"between dots must be 1 to 63 characters (international names valid IDNA), and "
            f"the whole name at most {MAX_HOST_LENGTH}."
        )
    return encoded


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


def checked_addresses(target: Target, private_ok: bool | None = None) -> list[str]:
    """Resolve the target's host and check every address; raises ``UnsafeUrl`` (refused) or
    ``OSError`` (does not resolve)."""
    private_ok = allow_private() if private_ok is None else private_ok
    addresses = resolve(target.host, target.port)
    if not private_ok:
        for address in addresses:
            why = address_refused(address)
            if why:
                # The address itself is never told: it would map the service's network.
                raise UnsafeUrl(
                    f"The webhook URL's host '{target.host}' resolves to a {why} address; "
                    "webhooks can only be posted to public addresses (an operator may allow "
                    "private ones with the setting WEBHOOK_ALLOW_PRIVATE_URLS=true)."
                )
    return addresses


def check_url(url: str, private_ok: bool | None = None) -> Target:
    """The configuration-time check: http(s), a host, and (when it resolves) only public
    addresses. A host that does not resolve yet is accepted; the send-time check still applies."""
    target = parse_url(url)
    if "@" in (urlsplit(url).netloc or ""):
        raise UnsafeUrl("Give basic-auth credentials in HttpAuth, not in the stored URL.")
    with contextlib.suppress(OSError):
        checked_addresses(target, private_ok)
    return target


# --- A webhook's custom headers -------------------------------------------------------------------


# Header names a webhook's custom headers may not set (the request's framing is ours).
FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "expect"}
)
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
# What a header value may hold: tab, visible ASCII, space and obs-text (RFC 9110 §5.5), i.e. what
# http.client can send (Latin-1) without control characters.
_HEADER_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
MAX_CUSTOM_HEADERS = 50


def validate_headers(headers) -> list[dict]:
    """Postmark's ``HttpHeaders`` ([{Name, Value}]), checked; raises ``ValueError``."""
    if headers in (None, ""):
        return []
    if not isinstance(headers, list):
        raise ValueError('HttpHeaders must be a list of {"Name": ..., "Value": ...} objects.')
    if len(headers) > MAX_CUSTOM_HEADERS:
        raise ValueError(f"HttpHeaders: at most {MAX_CUSTOM_HEADERS} headers can be set.")
    clean = []
    for entry in headers:
        if not isinstance(entry, dict):
            raise ValueError('HttpHeaders must be a list of {"Name": ..., "Value": ...} objects.')
        lowered = {str(k).lower(): v for k, v in entry.items()}
        name = lowered.get("name")
        value = lowered.get("value")
        value = "" if value is None else value
        if not isinstance(name, str) or not _HEADER_NAME_RE.fullmatch(name):
            raise ValueError(f"HttpHeaders: '{name}' is not a valid header name.")
        if name.lower() in FORBIDDEN_HEADERS:
            raise ValueError(f"HttpHeaders: the header '{name}' cannot be set.")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"HttpHeaders: the value of '{name}' must be a string.")
        value = str(value)
        if not _HEADER_VALUE_RE.fullmatch(value) or len(value) > 4000:
            raise ValueError(f"HttpHeaders: the value of '{name}' is not a valid header value.")
        clean.append({"Name": name, "Value": value})
    return clean
