"""Relaying: the delivery task's work, sending each outbound message to its recipients' hosts.

``deliver_messages`` reads the messages, takes their due recipients (``delivery.claims``), groups
them by destination and tries the destination's hosts in turn over pooled connections
(``delivery.connections``). Each recipient gets an SMTP transaction of its own, with a return path
of its own (so a report can only ever be about the recipient whose return path it came to), one
after the other over the same connection: MAIL FROM and RCPT TO pipelined where the server offers
PIPELINING, then the content (``delivery.content``: made and signed once for a message that is
the same for everyone). Every reply becomes the recipient's result (``delivery.outcomes``). The
lease is renewed before every connection, every transaction and DATA, and no recipient taken over
meanwhile is sent a copy.

As RFC 5321 asks: a connection lost before the end of DATA sends the recipients on to the next
host, but one lost (or timed out) while waiting for the reply to the content defers that
recipient on this host, since the message may have been delivered; a 452 to RCPT (§4.5.3.1.10)
tries the recipient again at once in a new transaction before deferring it; 8-bit content goes
with BODY=8BITMIME where the host offers it, converted to 7-bit where it does not
(``delivery.downgrade``), or bounced with the reason when it cannot be converted.
"""

import logging
import re
import smtplib
import socket
from collections import defaultdict

from django.db import transaction

from bounces.replies import SmtpFailure, Stage
from bounces.types import BAD_EMAIL_ADDRESS, HARD_BOUNCE
from core.db import is_database_unavailable
from core.logcontext import about_message
from delivery.claims import Claim
from delivery.connections import Transcript, pool
from delivery.content import Copies
from delivery.downgrade import Unconvertible, is_8bit
from delivery.outcomes import (
    apply_reply,
    bounced,
    defer,
    give_back,
    give_up_on_repeated_errors,
    no_smtputf8,
    refresh_statuses,
    unexpected_error,
)
from delivery.transport import (
    DnsFailure,
    Host,
    PermanentDnsFailure,
    UnsendableAddress,
    destination_of,
    envelope_address,
    hosts_for,
)
from messages.models import OutboundMessage, Recipient
from servers.models import DeliveryType

log = logging.getLogger(__name__)


# --- the task's work ------------------------------------------------------------------------------


def deliver_message(outbound_id: int) -> str:
    """Deliver the due recipients of one message; returns the message's status. An unexpected
    error is this message's alone: it is counted on the recipients and never raised, except an
    unreachable database (the task is retried)."""
    return deliver_messages([outbound_id]).get(outbound_id, "missing")


def deliver_messages(outbound_ids: list[int]) -> dict[int, str]:
    """Deliver the due recipients of several messages; returns each message's status. The
    messages are read in one query, their due recipients taken in one UPDATE
    (``Claim.take_all``) and their statuses refreshed in one pass; in between each message is
    sent on its own, in order, over the pooled connections, and an unexpected error in one is
    that message's alone (counted on its recipients, never raised). An unavailable database is
    raised, the recipients without a result given back first (``outcomes.give_back``): the
    task is retried."""
    messages = list(
        OutboundMessage.objects.select_related("server", "stream")
        .filter(pk__in=outbound_ids)
        .order_by("pk")
    )
    statuses, live = {}, []
    for message in messages:
        if message.server.delivery_type == DeliveryType.SANDBOX:
            with about_message(message.message_id, message.server_id, message.stream.stream_id):
                statuses[message.pk] = _sandbox(message)
        else:
            live.append(message)
    claims = Claim.take_all(live) if live else {}
    try:
        for message in live:
            with about_message(message.message_id, message.server_id, message.stream.stream_id):
                _deliver_claim(claims[message.pk])
    except Exception as exc:
        if is_database_unavailable(exc):  # not the messages' fault
            give_back(list(claims.values()))
        raise
    statuses.update(refresh_statuses(live))
    return statuses


def _deliver_claim(claim: Claim) -> None:
    if not claim:
        return
    try:
        give_up_on_repeated_errors(claim)
        _deliver_claimed(claim)
    except Exception as exc:
        if is_database_unavailable(exc):  # not the message's fault: the task is retried
            raise
        log.exception("delivering message %s failed", claim.message.message_id)
        unexpected_error(claim, exc)


def _deliver_claimed(claim: Claim) -> None:
    message = claim.message
    by_destination: dict[str, list[Recipient]] = defaultdict(list)
    for recipient in claim.recipients():
        try:
            envelope_address(recipient.email)
            destination = destination_of(recipient.email)
        except UnsendableAddress as exc:
            failure = SmtpFailure(BAD_EMAIL_ADDRESS, permanent=True, deactivates=False)
            bounced(claim, recipient, failure, f"Not sent: {exc}", Transcript())
            continue
        by_destination[destination].append(recipient)
    copies = Copies(message)
    for destination, recipients in by_destination.items():
        _deliver_to(claim, destination, recipients, copies)


def _sandbox(message: OutboundMessage) -> str:
    """A sandbox server records the message and delivers nothing."""
    with transaction.atomic():
        message.deliveries.filter(status=Recipient.Status.PENDING).update(
            status=Recipient.Status.SANDBOXED, last_reply="Sandbox server: not delivered"
        )
        message.status = OutboundMessage.Status.SANDBOXED
        message.save(update_fields=["status"])
    return message.status


def _deliver_to(claim: Claim, destination: str, recipients: list[Recipient], copies) -> None:
    """Send to the recipients at one destination: one transaction each, over one connection
    to the first of its hosts that takes them; those a host could not be reached for (or that
    closed the connection) go on to the next host, and are deferred after the last."""
    transcript = Transcript()
    try:
        hosts = hosts_for(destination)
    except PermanentDnsFailure as exc:
        failure = SmtpFailure(HARD_BOUNCE, permanent=True, deactivates=True)
        transcript.append(f"-- {exc}")
        for recipient in recipients:
            bounced(claim, recipient, failure, f"{exc.status} {exc}", transcript)
        return
    except DnsFailure as exc:
        for recipient in recipients:
            defer(claim, recipient, str(exc), transcript, dns=True)
        return
    last_error = "no mail host could be reached"
    for host in hosts:
        claim.renew()  # connecting may take a while: OUTBOUND_TIMEOUT for each step
        recipients = [r for r in recipients if claim.holds(r)]
        if not recipients:
            return
        transcript.append(f"-- connecting to {host.host}:{host.port}")
        try:
            connection = pool().acquire(host)
        except DnsFailure as exc:
            last_error = str(exc)
            continue
        except (OSError, smtplib.SMTPException) as exc:
            # Refused before any recipient was named (connection, TLS, relay authentication):
            # not the recipients' fault, so they are retried, never bounced.
            last_error = f"{host.host}:{host.port}: {_describe(exc)}"
            transcript.append(f"-- {last_error}")
            continue
        reusable = False
        try:
            _transactions(claim, connection, host, recipients, transcript, copies)
            reusable = True
            return
        except (OSError, smtplib.SMTPException) as exc:
            last_error = f"{host.host}:{host.port}: {_describe(exc)}"
            transcript.append(f"-- {last_error}")
        finally:
            pool().release(host, connection, reusable)
    for recipient in recipients:
        if claim.holds(recipient):
            defer(claim, recipient, last_error, transcript)


def _describe(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace')}"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or exc.__class__.__name__


# --- the SMTP transactions ------------------------------------------------------------------------


class ConnectionClosed(smtplib.SMTPResponseException):
    """The server answered 421 and closed the connection; the recipients not yet sent to go on
    to the next host."""


# A 452 to RCPT (RFC 5321 §4.5.3.1.10: too many recipients for this transaction, or not enough
# storage for it): the recipient is tried again at once in a new transaction over the same
# connection, this many times, before it is deferred.
NEW_TRANSACTIONS_AFTER_452 = 1


def _transactions(claim: Claim, connection, host: Host, recipients, transcript, copies) -> None:
    """One transaction per recipient, in turn, over ``connection``. A transaction's lines go to
    its own recipient's dump (with how the connection was made), not to the others'."""
    for recipient in recipients:
        own = Transcript(transcript)
        try:
            for again in range(NEW_TRANSACTIONS_AFTER_452, -1, -1):
                if not claim.holds(recipient):
                    break
                if not _transaction(claim, connection, host, recipient, own, copies, again):
                    break
        except (OSError, smtplib.SMTPException):
            transcript[:] = own  # the next host's dumps show what went wrong here
            raise


def _transaction(claim: Claim, connection, host: Host, recipient, transcript, copies, again=0):
    """One SMTP transaction for one recipient, from its own return path; returns True when the
    recipient is to be tried again in a new transaction (a 452 at RCPT, ``again`` times more
    at most). Raises ``ConnectionClosed`` after a reply that closed the connection (421),
    recorded first, and the connection's error when it failed; when it failed after the
    message was sent, the recipient is deferred first (it may have been delivered)."""
    claim.renew()
    if not claim.holds(recipient):
        return False
    address, utf8 = envelope_address(recipient.email)
    if utf8 and not connection.has_extn("smtputf8"):
        no_smtputf8(claim, recipient, host, transcript)
        return False
    content, eight_bit_mime = None, connection.has_extn("8bitmime")
    if copies.eight_bit and not eight_bit_mime:
        try:
            content = copies.content(recipient, False, connection.has_extn("smtputf8"))
        except Unconvertible as exc:
            _unconvertible(claim, recipient, host, exc, transcript)
            return False
    options = ["BODY=8BITMIME"] if copies.eight_bit and eight_bit_mime else []
    if utf8 or (content is not None and is_8bit(content)):  # UTF-8 headers (RFC 6532)
        options.append("SMTPUTF8")
        connection.command_encoding = "utf-8"  # as smtplib's mail() does; rset() resets it
    # Not smtplib's mail() and rcpt(): they re-parse each address as a header would (costlier
    # than any other step but signing), and can change it.
    commands = [
        ("MAIL", " ".join([f"FROM:<{copies.return_path(recipient)}>", *options])),
        ("RCPT", f"TO:<{address}>"),
    ]
    send = _pipelined if connection.has_extn("pipelining") else _one_by_one
    replies = send(connection, commands, transcript)
    code, text = replies[0]
    if code >= 400:
        apply_reply(claim, recipient, Stage.MAIL, code, text, transcript)
        _closed_by(code, text)
        return False
    code, text = replies[1]
    if code not in (250, 251):
        if _too_many_recipients(code, text) and again:
            transcript.append("-- a new transaction for this recipient (RFC 5321 §4.5.3.1.10)")
            transcript.client("RSET")
            connection.rset()
            return True
        if _too_many_recipients(code, text):  # a 552 here is temporary too (§4.5.3.1.10)
            defer(claim, recipient, _reply_line(code, text), transcript)
        else:
            apply_reply(claim, recipient, Stage.RCPT, code, text, transcript)
            _closed_by(code, text)
        connection.rset()
        return False
    if not claim.still_held([recipient]):
        # Taken over while this transaction went on: never send it a copy.
        transcript.client("RSET")
        connection.rset()
        return False
    if content is None:
        content = copies.content(recipient)
    code, text = _data(claim, connection, host, recipient, content, transcript)
    transcript.server(code, text)
    apply_reply(claim, recipient, Stage.DATA, code, text, transcript)
    _closed_by(code, text)
    return False


def _too_many_recipients(code: int, text) -> bool:
    """452, or 552 with the status 5.5.3 (too many recipients), to RCPT."""
    return code == 452 or (code == 552 and _reply_line(code, text).startswith("552 5.5.3"))


def _reply_line(code: int, text) -> str:
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(reply.split())}"


def _data(claim: Claim, connection, host: Host, recipient, content: bytes, transcript):
    """DATA, the content, and the reply to it. When the connection fails (a time-out, or
    closed) after the whole content was sent, the message may have been delivered: the
    recipient is deferred on this host (tried again later, from the first host, never sent to
    the next host now), and the error raised."""
    transcript.client("DATA")
    code, text = connection.docmd("DATA")
    if code != 354:
        return code, text
    transcript.server(code, text)
    connection.send(_dot_stuffed(content))  # fails before the end: nothing was delivered
    try:
        return connection.getreply()
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        reason = (
            f"{host.host}:{host.port}: no reply after the message was sent ({_describe(exc)}): "
            f"it may have been delivered, so it is not sent to another host now"
        )
        transcript.append(f"-- {reason}")
        defer(claim, recipient, reason, transcript)
        raise


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _dot_stuffed(content: bytes) -> bytes:
    """The content as DATA carries it (RFC 5321 §4.5.2), ended by the line with one dot."""
    content = _LEADING_DOT.sub(b"..", content)
    return content + (b"" if content.endswith(b"\r\n") else b"\r\n") + b".\r\n"


def _unconvertible(claim: Claim, recipient, host: Host, exc: Unconvertible, transcript) -> None:
    """8-bit content, a next hop without 8BITMIME (RFC 6152), and a message that cannot be
    converted to 7-bit: bounced, with the reason."""
    reason = (
        f"Not sent: the message holds 8-bit content and the mail server {host.host} does not "
        f"offer 8BITMIME (RFC 6152); it could not be converted to 7-bit: {exc}"
    )
    transcript.append(f"-- {reason}")
    bounced(claim, recipient, SmtpFailure(HARD_BOUNCE, True, False), reason, transcript)


def _closed_by(code: int, text) -> None:
    if code == 421:
        raise ConnectionClosed(code, text if isinstance(text, bytes) else str(text).encode())


def _pipelined(connection: smtplib.SMTP, commands: list[tuple[str, str]], transcript) -> list:
    """MAIL FROM and the RCPT TOs written at once, then their replies read in order (RFC 2920,
    where the server offers PIPELINING): one round trip instead of one per command. When MAIL
    is refused the server refuses the RCPTs too; their replies are read all the same, unless it
    closed the connection after refusing MAIL (a 421), whose reply then stands for all."""
    for verb, argument in commands:
        transcript.client(f"{verb} {argument}")
    connection.send("".join(f"{verb} {argument}\r\n" for verb, argument in commands))
    replies = []
    try:
        for _ in commands:
            replies.append(connection.getreply())
    except smtplib.SMTPServerDisconnected:
        if not replies or replies[0][0] < 400:
            raise
    for code, text in replies:
        transcript.server(code, text)
    return replies


def _one_by_one(connection: smtplib.SMTP, commands: list[tuple[str, str]], transcript) -> list:
    """The same, a command at a time; none after a refused MAIL (whose reply is all there is)."""
    replies = []
    for verb, argument in commands:
        transcript.client(f"{verb} {argument}")
        replies.append(connection.docmd(verb, argument))
        transcript.server(*replies[-1])
        if replies[0][0] >= 400:
            break
    return replies
