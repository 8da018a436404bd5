"""The service's own mail names, and the rule that flags one nobody else can reach.

``SMTP_HOSTNAME`` (greeting, EHLO name, ``Received:`` lines), ``MESSAGE_ID_DOMAIN`` (every
Message-ID) and ``BOUNCE_DOMAIN`` (VERP return paths, the Return-Path CNAME a domain publishes)
fall back on each other and finally on ``localhost`` or the machine's name. A loopback or
single-label name works on one machine and nowhere else: receivers cannot send bounces back,
and the DNS records the domain page asks for point nowhere. ``local_name_warnings`` is the one
place that says so; the System page, the domain page, the start-up banner and ``runsmtp``'s
start-up log show its sentences.
"""

import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

# What each setting names, for the sentence that tells the operator about it.
_USES = {
    "SMTP_HOSTNAME": "the gateway's greeting and the Received: lines",
    "MESSAGE_ID_DOMAIN": "every Message-ID (<id>@domain)",
    "BOUNCE_DOMAIN": "the return paths bounces come back to and the Return-Path CNAME domains "
    "publish",
}


@lru_cache(maxsize=1)
def machine_name() -> str:
    """The machine's fully qualified name (looked up once: it may ask DNS)."""
    return socket.getfqdn()


def smtp_hostname() -> str:
    """The gateway's own name: SMTP_HOSTNAME, else the machine's name."""
    return settings.SMTP_HOSTNAME or machine_name()


def why_local(name: str) -> str:
    """Why ``name`` cannot be the public name of a mail service ('' when it can): empty, an IP
    address, a loopback name (``localhost``, ``*.localhost``, ``localhost.localdomain``) or a
    single label (no dot: a bare machine name)."""
    name = (name or "").strip().rstrip(".").lower()
    if not name:
        return "empty"
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        return "a loopback address" if address.is_loopback else "an IP address, not a name"
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return "a loopback name"
    if "." not in name:
        return "a single-label name"
    return ""


@dataclass(frozen=True)
class LocalName:
    setting: str
    value: str
    why: str

    @property
    def sentence(self) -> str:
        return (
            f"{self.setting} resolves to '{self.value}', {self.why}: it is used for "
            f"{_USES[self.setting]}, which nobody outside this machine can reach. Set "
            f"{self.setting} to a public domain name of this service."
        )


def local_name_warnings() -> list[LocalName]:
    """Each of SMTP_HOSTNAME, MESSAGE_ID_DOMAIN and BOUNCE_DOMAIN whose value in effect (after
    the fall-backs) is a name only this machine knows."""
    values = {
        "SMTP_HOSTNAME": smtp_hostname(),
        "MESSAGE_ID_DOMAIN": settings.MESSAGE_ID_DOMAIN,
        "BOUNCE_DOMAIN": settings.BOUNCE_DOMAIN,
    }
    found = []
    for setting, value in values.items():
        why = why_local(value)
        if why:
            found.append(LocalName(setting, value, why))
    return found
