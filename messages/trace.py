"""The message as it will be delivered (``delivered_content``), with the trace fields processing
adds to every message it accepts: a ``Received:`` line (RFC 5321 §4.4) on top, and a ``Date:``
when the client sent none (RFC 5322 §3.6 requires one; Postmark adds it too). Both are in the
stored content, so the DKIM signature made at delivery covers the message as the receiver sees
it.
"""

import email.utils
import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from core import mime
from core.hostnames import smtp_hostname

# A HELO/EHLO argument worth repeating: a domain or an address literal, nothing that could
# break the field (parentheses, semicolons, white space, 8-bit bytes).
_HELO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?|\[[0-9A-Fa-f:.IPv]{2,60}\]")

_UNSAFE = re.compile(r"[\s<>;()\x00-\x1f\x7f]")

# The submission's columns an Arrival is read from (beside message_id, endpoint and rcpt_to).
ARRIVAL_FIELDS = ("client_address", "client_helo", "tls_version", "auth_mechanism",
                  "credential_kind", "received_at")  # fmt: skip


@dataclass(frozen=True)
class Arrival:
    """How one submission arrived: what its Received line says."""

    message_id: str
    client_address: str
    client_helo: str = ""
    tls_version: str = ""
    auth_mechanism: str = ""
    endpoint: str = ""  # streams.models.Endpoint: "api" for the HTTP send API
    authenticated: bool = True
    recipients: tuple[str, ...] = ()
    received_at: datetime | None = None

    @classmethod
    def of(cls, submission) -> "Arrival":
        return cls(
            message_id=str(submission.message_id),
            client_address=submission.client_address or "",
            client_helo=submission.client_helo or "",
            tls_version=submission.tls_version or "",
            auth_mechanism=submission.auth_mechanism or "",
            endpoint=submission.endpoint or "",
            authenticated=submission.credential_kind != "ip",
            recipients=tuple(submission.rcpt_to or ()),
            received_at=submission.received_at,
        )


def address_literal(address: str) -> str:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "[0.0.0.0]"
    if parsed.version == 6 and parsed.ipv4_mapped:
        parsed = parsed.ipv4_mapped
    return f"[IPv6:{parsed.compressed}]" if parsed.version == 6 else f"[{parsed}]"


def protocol(arrival: Arrival) -> str:
    """The ``with`` of the line: ESMTP, ESMTPS (TLS), ESMTPA (AUTH) or ESMTPSA (both), RFC 3848;
    HTTP or HTTPS for the HTTP send API."""
    tls = bool(arrival.tls_version) and arrival.tls_version.lower() != "no"
    if arrival.endpoint == "api":
        return "HTTPS" if tls else "HTTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if arrival.authenticated else "")


def received_field(arrival: Arrival) -> bytes:
    """``Received: from HELO ([IP]) by SMTP_HOSTNAME with PROTOCOL id MessageID [for <rcpt>];
    date``, folded at its clauses. The client is named by its HELO (when it is a plausible
    name) and its address; no reverse DNS is looked up."""
    literal = address_literal(arrival.client_address)
    helo = arrival.client_helo.strip()
    source = helo if helo and _HELO.fullmatch(helo) else literal
    by = smtp_hostname()
    by = by if _HELO.fullmatch(by or "") else "localhost"
    recipients = {r.strip() for r in arrival.recipients if r.strip()}
    when = (arrival.received_at or datetime.now(UTC)).astimezone(UTC)
    clauses = [
        f"Received: from {source} ({literal})",
        f"by {by} with {protocol(arrival)} id {arrival.message_id}",
    ]
    if len(recipients) == 1:
        (recipient,) = recipients
        if recipient.isascii() and len(recipient) <= 320 and not _UNSAFE.search(recipient):
            clauses.append(f"for <{recipient}>")
    clauses[-1] += ";"
    clauses.append(email.utils.format_datetime(when))
    return "\r\n\t".join(clauses).encode("utf-8")


def date_field(arrival: Arrival) -> bytes:
    """``Date:`` at the moment the message was accepted."""
    when = (arrival.received_at or datetime.now(UTC)).astimezone(UTC)
    return f"Date: {email.utils.format_datetime(when)}".encode()


def delivered_content(
    raw: bytes,
    message_id_header: str,
    keep_id: bool,
    message_id: uuid.UUID,
    arrival: Arrival | None = None,
    has_date: bool = True,
) -> tuple[bytes, str]:
    """The message as it will be delivered: no X-PM-* or Bcc header, a Message-ID derived from
    the MessageID unless the client asked to keep its own, and with ``arrival`` the trace
    fields (``messages.trace``: a Received line on top, a Date when ``has_date`` is false).
    Returns the bytes and the Message-ID header value."""
    prepend = [received_field(arrival)] if arrival is not None else []
    added = [date_field(arrival)] if arrival is not None and not has_date else []
    if keep_id and message_id_header:
        return mime.rewrite(raw, _drop_private, added, prepend), message_id_header
    new_id = f"<{message_id}@{settings.MESSAGE_ID_DOMAIN}>"
    content = mime.rewrite(
        raw,
        lambda name: _drop_private(name) or name == "message-id",
        [f"Message-ID: {new_id}".encode(), *added],
        prepend,
    )
    return content, new_id


def _drop_private(name: str) -> bool:
    return name.startswith("x-pm-") or name == "bcc"
