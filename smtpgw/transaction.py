"""The mail transaction of a gateway session: aiosmtpd's hooks for EHLO's keywords, MAIL, RCPT and
DATA (:class:`TransactionHandler`), the bounce MX's VERP recipients, the inbound MX's recipients
(one copy stored per recipient), the strict-mode check, the durable accept through the group
committer, and the one log line per transaction."""

import asyncio
import inspect
import logging
import time
import uuid

from django.utils import timezone

from core.db import is_database_unavailable
from core.logcontext import about_message
from messages import limits as sending_limits
from messages.models import Submission
from messages.processing import examine
from smtpgw import credentials, metrics, storable
from smtpgw.committer import RecordRefused
from smtpgw.replies import CANNOT_STORE, LOCAL_ERROR, NOT_STORED
from smtpgw.session import GatewaySMTP, names_with_prefix
from streams.listeners import Listener
from streams.models import Endpoint

log = logging.getLogger("smtpgw")

# The inbound MX stores one copy per recipient: at most this many per transaction (452 for more,
# which a sending MTA sends again in a transaction of its own), so one message of 35 MB cannot
# become gigabytes written in one commit.
INBOUND_COPIES_PER_TRANSACTION = 10
transaction_log = logging.getLogger("smtpgw.transaction")


def strict_refusal(row: dict) -> str:
    """For servers in strict mode: the 5xx reply for the first problem processing would record,
    or '' when there is none."""
    try:
        problems = examine(Submission(**row))[3]
    except Exception:
        log.exception("strict-mode check failed; accepting and leaving it to processing")
        return ""
    if not problems:
        return ""
    problem = problems[0]
    enhanced = "5.1.1" if problem.error_code == 406 else "5.7.1"
    text = " ".join(problem.message.split())
    return f"550 {enhanced} {text} (ErrorCode {problem.error_code})"


class TransactionHandler:
    """aiosmtpd hooks for the mail transaction: EHLO keywords, MAIL, RCPT and DATA. ``gateway``
    is the process's ``smtpgw.server.Gateway`` (not imported here: it imports this module)."""

    def __init__(self, gateway, listener: Listener):
        self.gateway = gateway
        self.listener = listener

    def __dir__(self):
        return names_with_prefix(type(self), ("handle_", "auth_"))

    async def handle_exception(self, error: Exception) -> str:
        """An error of ours inside a command (the database down while a limit or a VERP address
        is checked, a bug) is never the client's fault: a temporary 451, so the mail is retried,
        where aiosmtpd's default, a permanent 500, would bounce it."""
        if is_database_unavailable(error):
            log.warning("database unavailable during a command: %s", error)
        else:
            log.exception("error inside an SMTP command")
        metrics.transaction_ended(self.listener.endpoint, LOCAL_ERROR)
        return LOCAL_ERROR

    async def handle_EHLO(self, server: GatewaySMTP, session, envelope, hostname, responses):
        session.host_name = hostname
        lines = [r for r in responses if not r.startswith(("250-AUTH", "250 HELP"))]
        lines += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        if self.listener.endpoint in (Endpoint.BOUNCE, Endpoint.INBOUND):
            lines[-1] = "250 ENHANCEDSTATUSCODES"
        else:
            lines.append("250 AUTH " + " ".join(server.offered_mechanisms()))
        return lines

    async def handle_MAIL(self, server: GatewaySMTP, session, envelope, address, options):
        server._mail_started = time.monotonic()
        refusal = storable.sender_refusal(address)
        if refusal:
            return self.log(server, session, envelope, refusal)
        if self.listener.endpoint in (Endpoint.BOUNCE, Endpoint.INBOUND):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
            return "250 2.1.0 Sender OK"
        refusal = credentials.endpoint_refusal(session.identity, self.listener.endpoint)
        if not refusal:
            server_id = session.identity.server_id
            refusal = sending_limits.cached_refusal(server_id)
            if refusal is None:
                refusal = await self.gateway.run_blocking(
                    sending_limits.sending_limit_refusal, server_id
                )
        if refusal:
            self.log(server, session, envelope, refusal)
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: GatewaySMTP, session, envelope, address, options):
        refusal = storable.recipient_refusal(address)
        if refusal:
            return refusal
        if self.listener.endpoint == Endpoint.BOUNCE:
            return await self.bounce_recipient(session, envelope, address, options)
        if self.listener.endpoint == Endpoint.INBOUND:
            return await self.inbound_recipient(session, envelope, address, options)
        if len(envelope.rcpt_tos) >= self.gateway.max_recipients:
            return (
                f"452 4.5.3 Too many recipients: at most {self.gateway.max_recipients} per message"
            )
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    async def bounce_recipient(self, session, envelope, address, options) -> str:
        """The bounce MX takes mail only for the VERP address of a message this service sent,
        one message per transaction: it is never a relay."""
        identity = await self.gateway.run_blocking(credentials.identity_for_verp, address)
        if identity is None:
            return "550 5.1.1 No such bounce address here (this host relays nothing)"
        current = getattr(session, "identity", None)
        if current is not None and current.credential != identity.credential:
            return "452 4.5.3 One bounce address per transaction, please"
        session.identity = identity
        session.auth_mechanism = ""
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    async def inbound_recipient(self, session, envelope, address, options) -> str:
        """The inbound MX takes mail only for servers' inbound addresses (and every address at
        a server's InboundDomain), for one server per transaction: it never accepts what it
        cannot place, so it never sends a bounce of its own (no backscatter)."""
        identity = await self.gateway.run_blocking(credentials.identity_for_inbound, address)
        if identity is None:
            return "550 5.1.1 No such inbound address here (this host relays nothing)"
        current = getattr(session, "identity", None)
        if current is not None and current.server_id != identity.server_id:
            return "452 4.5.3 One server's inbound addresses per transaction, please"
        most = min(self.gateway.max_recipients, INBOUND_COPIES_PER_TRANSACTION)
        if len(envelope.rcpt_tos) >= most:
            return f"452 4.5.3 Too many recipients: at most {most} per message"
        session.identity = identity
        session.auth_mechanism = ""
        if address.lower() not in (r.lower() for r in envelope.rcpt_tos):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: GatewaySMTP, session, envelope):
        content: bytes = envelope.original_content
        identity = session.identity
        row = {
            "message_id": uuid.uuid4(),
            "server_id": identity.server_id,
            "stream_id": identity.stream_pk,
            "endpoint": self.listener.endpoint,
            "credential_kind": identity.kind,
            "credential": identity.credential,
            "auth_mechanism": getattr(session, "auth_mechanism", ""),
            "client_address": server.client_ip,
            "client_helo": session.host_name or "",
            "tls_version": server.tls_version(),
            "mail_from": envelope.mail_from or "",
            "rcpt_to": list(envelope.rcpt_tos),
            "size": len(content),
            "raw": content,
            "status": Submission.Status.ACCEPTED,
            "received_at": timezone.now(),
        }
        with about_message(row["message_id"], identity.server_id, identity.stream_id):
            if self.listener.endpoint == Endpoint.INBOUND and len(envelope.rcpt_tos) > 1:
                return await self.store_copies(server, session, envelope, row)
            return await self.store(server, session, envelope, row)

    async def store_copies(self, server: GatewaySMTP, session, envelope, row: dict) -> str:
        """The inbound MX keeps one copy per recipient (each is its own inbound message, with
        its own OriginalRecipient and MailboxHash), committed together before the 250."""
        rows = [
            {**row, "message_id": row["message_id"] if i == 0 else uuid.uuid4(), "rcpt_to": [r]}
            for i, r in enumerate(envelope.rcpt_tos)
        ]
        for one in rows:
            problem = storable.row_problem(one)
            if problem:
                log.warning("submission refused before commit: %s", problem)
                return self.log(server, session, envelope, f"{CANNOT_STORE} ({problem})")
        try:
            await asyncio.gather(*(self.gateway.committer.commit(one) for one in rows))
        except RecordRefused:
            return self.log(server, session, envelope, CANNOT_STORE)
        except Exception:
            return self.log(server, session, envelope, NOT_STORED)
        metrics.ACCEPTED.labels(self.listener.endpoint).inc(len(rows))
        metrics.ACCEPTED_BYTES.labels(self.listener.endpoint).inc(row["size"] * len(rows))
        return self.log(server, session, envelope, f"250 2.0.0 Ok: queued as {row['message_id']}")

    async def store(self, server: GatewaySMTP, session, envelope, row: dict) -> str:
        """Commit the submission (with the others waiting: group commit) and answer."""
        problem = storable.row_problem(row)
        if problem:
            log.warning("submission refused before commit: %s", problem)
            return self.log(server, session, envelope, f"{CANNOT_STORE} ({problem})")
        refusal = ""
        if session.identity.strict:
            refusal = await self.gateway.run_blocking(strict_refusal, row)
            if refusal:
                # Kept and processed all the same, so that the SMTPApiError record exists too.
                row["status"] = Submission.Status.REJECTED
        try:
            await self.gateway.committer.commit(row)
        except RecordRefused:
            return self.log(server, session, envelope, CANNOT_STORE)
        except Exception:
            return self.log(server, session, envelope, NOT_STORED)
        metrics.ACCEPTED.labels(self.listener.endpoint).inc()
        metrics.ACCEPTED_BYTES.labels(self.listener.endpoint).inc(row["size"])
        return self.log(
            server, session, envelope, refusal or f"250 2.0.0 Ok: queued as {row['message_id']}"
        )

    def log(self, server: GatewaySMTP, session, envelope, status: str) -> str:
        """One line per transaction: client, identity, stream, size, result, milliseconds."""
        identity = getattr(session, "identity", None)
        elapsed = (time.monotonic() - server._mail_started) * 1000 if server._mail_started else 0
        content = getattr(envelope, "original_content", None) or b""
        metrics.transaction_ended(self.listener.endpoint, status)
        transaction_log.info(
            "client=%s endpoint=%s auth=%s server=%s stream=%s from=<%s> rcpts=%d size=%d "
            "tls=%s result=%r ms=%.1f",
            server.client_ip,
            self.listener.endpoint,
            identity.label() if identity else "-",
            identity.server_id if identity else "-",
            (identity.stream_id or "(header)") if identity else "-",
            envelope.mail_from or "",
            len(envelope.rcpt_tos),
            len(content),
            server.tls_version() or "no",
            status,
            elapsed,
        )
        return status


# aiosmtpd reads the EHLO hook's signature on every connection (to tell a deprecated form apart);
# given once here, it costs nothing per connection.
TransactionHandler.handle_EHLO.__signature__ = inspect.signature(TransactionHandler.handle_EHLO)
