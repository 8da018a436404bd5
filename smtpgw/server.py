"""The SMTP protocol edge: aiosmtpd sessions, AUTH mechanisms, limits and the durable accept.

Only protocol lives here. Who may send is decided in ``smtpgw.credentials``, SASL arithmetic in
``smtpgw.sasl``, what the service can store in ``smtpgw.storable``, the message data is read by
``smtpgw.data_reader``, and the records are written by ``messages.submissions`` through the group
committer. Anything that touches the database runs in a thread pool, never on the event loop.
"""

import asyncio
import base64
import binascii
import functools
import inspect
import logging
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, syntax
from django.conf import settings
from django.utils import timezone

from core.crypto import same
from core.logcontext import about_message
from messages import limits as sending_limits
from messages.models import Submission
from messages.processing import examine
from messages.submissions import note_token_use, save_submissions
from messages.tasks import enqueue_processing
from smtpgw import credentials, metrics, sasl, storable
from smtpgw.committer import Dispatcher, GroupCommitter, RecordRefused
from smtpgw.data_reader import DataReader, read_data
from smtpgw.limits import ConnectionLimits
from smtpgw.throttle import SharedThrottle
from streams.listeners import Listener
from streams.models import Endpoint

log = logging.getLogger("smtpgw")
transaction_log = logging.getLogger("smtpgw.transaction")

# The common MAIL FROM / RCPT TO path: <dot-atom@host.name>, nothing quoted, no route, no literal.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
PLAIN_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*)>")

AUTH_MECHANISMS = ("CRAM-MD5", "DIGEST-MD5", "PLAIN", "LOGIN")
CLEARTEXT_MECHANISMS = ("PLAIN", "LOGIN")

AUTH_REQUIRED = "530 5.7.0 Authentication required"
TEMPORARY_AUTH_FAILURE = "454 4.7.0 Temporary authentication failure, try again later"
TOO_MANY_FAILURES = "421 4.7.0 Too many failed authentication attempts, try again later"
NOT_STORED = "451 4.3.0 The message could not be stored; please try again later"
CANNOT_STORE = "554 5.3.0 Message refused: it holds a value the service cannot store"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
IDLE_TIMEOUT = "421 4.4.2 Idle timeout, closing connection"
TLS_ALREADY_ACTIVE = "503 5.5.1 TLS is already active on this connection"
NO_AUTH_AT_BOUNCE_MX = "502 5.5.1 AUTH is not available here: this host only receives bounces"
AUTH_LINE_TOO_LONG = "500 5.5.6 Authentication Exchange line is too long"
SMUGGLING = (
    "550 5.5.2 Message refused: bare CR or LF next to a line holding only a dot "
    "(only CRLF line endings are allowed around it)"
)

# Enhanced status codes (RFC 2034) for aiosmtpd's own replies, by reply code.
DEFAULT_ENHANCED = {
    "2": "2.0.0",
    "4": "4.0.0",
    "5": "5.0.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.7.0",
    "555": "5.5.4",
}
HAS_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")


def with_enhanced_code(status: str) -> str:
    """Add an enhanced status code to a single-line reply that lacks one."""
    code, sep, text = status.partition(" ")
    if not (len(code) == 3 and code.isdigit()) or code in ("220", "334", "354"):
        return status
    if HAS_ENHANCED.match(text):
        return status
    enhanced = DEFAULT_ENHANCED.get(code) or DEFAULT_ENHANCED[code[0]]
    return f"{code} {enhanced} {text}" if text else f"{code} {enhanced}"


class Gateway:
    """Per-process state shared by every session: the thread pool, the group committer, limits."""

    def __init__(self):
        self.hostname = settings.SMTP_HOSTNAME or socket.getfqdn()
        self.max_size = settings.SMTP_MAX_MESSAGE_SIZE
        self.max_recipients = settings.SMTP_MAX_RECIPIENTS
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="smtp-db")
        self.dispatcher = Dispatcher(
            enqueue_processing, settings.SMTP_DISPATCH_INTERVAL, settings.SMTP_COMMIT_BATCH
        )
        self.committer = GroupCommitter(
            save_submissions, settings.SMTP_COMMIT_BATCH, after_commit=self.after_commit
        )
        self.throttle = SharedThrottle(
            self.run_blocking,
            settings.SMTP_AUTH_FAILURE_LIMIT,
            settings.SMTP_AUTH_FAILURE_WINDOW,
            settings.SMTP_AUTH_FAILURE_LIMIT_PER_USERNAME,
            refresh=settings.SMTP_AUTH_THROTTLE_REFRESH,
        )
        self.limits = ConnectionLimits(
            settings.SMTP_MAX_CONNECTIONS, settings.SMTP_MAX_CONNECTIONS_PER_ADDRESS
        )
        self.sessions: set[GatewaySMTP] = set()
        self.shutting_down = False

    def after_commit(self, rows: list[dict]) -> None:
        """In the writer thread, once the clients have their 250: queue processing, note use."""
        self.dispatcher.add([str(row["message_id"]) for row in rows])
        note_token_use(rows)

    async def run_blocking(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)

    def protocol_factory(self, listener: Listener, tls_context):
        handler = TransactionHandler(self, listener)  # stateless: one per listener

        def factory():
            return GatewaySMTP(self, listener, handler, tls_context)

        return factory

    async def drain(self, grace: float) -> None:
        """Close idle sessions now; give those inside a transaction ``grace`` seconds to finish."""
        self.shutting_down = True
        deadline = time.monotonic() + grace
        while self.sessions and time.monotonic() < deadline:
            for session in list(self.sessions):
                if not session.in_transaction():
                    session.close_with(SHUTTING_DOWN)
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            session.close_with(SHUTTING_DOWN)

    def close(self) -> None:
        self.committer.close()
        self.dispatcher.close()
        self.executor.shutdown(wait=True)


class GatewaySMTP(SMTP):
    """One SMTP connection."""

    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, gateway: Gateway, listener: Listener, handler, tls_context):
        self.gateway = gateway
        self.listener = listener
        self.client_ip = ""
        self.proxied_peer: tuple[str, int] | None = None  # set by smtpgw.proxy on +proxy listeners
        self.refused = False
        self._verbatim = False
        self._mail_started = 0.0
        self._ended_by = "disconnected"  # how the session ended, for the metrics
        super().__init__(
            handler,
            data_size_limit=gateway.max_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=gateway.hostname,
            ident="ESMTP",
            tls_context=None if listener.implicit_tls else tls_context,
            timeout=settings.SMTP_IDLE_TIMEOUT,
            auth_require_tls=False,  # decided per mechanism in smtp_AUTH; see tls_active()
            loop=asyncio.get_running_loop(),
        )

    def __dir__(self):
        # aiosmtpd's __init__ scans dir(self) for auth_* and smtp_* methods on every connection,
        # which costs more than the rest of a message; the names are the same for every session.
        return _names_with_prefix(type(self), ("auth_", "smtp_"))

    def _getaddr(self, arg: str):
        """aiosmtpd's reading of a MAIL FROM or RCPT TO argument, with the common case (a plain
        ``<local@host.name>``, ``PLAIN_PATH``) read by a regular expression instead of the email
        package's header parser, which took a quarter of the gateway's CPU. Anything else, a
        comment after the path included, still goes to the parser; the answers are the same
        (held equal by a property test)."""
        match = PLAIN_PATH.match(arg)
        rest = arg[match.end() :].lstrip(" \t") if match else ""
        if match is None or rest.startswith("("):
            return super()._getaddr(arg)
        address = match.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    # --- connection ---------------------------------------------------------------------------
    def connection_made(self, transport):
        first_call = self.transport is None
        if first_call:
            peer = self.proxied_peer or transport.get_extra_info("peername") or ("", 0)
            self.client_ip = str(peer[0])
            refusal = ""
            if self.gateway.shutting_down:
                refusal = SHUTTING_DOWN
            elif self.gateway.throttle.blocked(self.client_ip):
                refusal = TOO_MANY_FAILURES
            else:
                refusal = self.gateway.limits.admit(self.client_ip)
            if refusal:
                self.refused = True
                metrics.CONNECTIONS.labels(self.listener.endpoint, "refused").inc()
                transport.write(refusal.encode() + b"\r\n")
                transport.close()
                return
            metrics.CONNECTIONS.labels(self.listener.endpoint, "accepted").inc()
            self.gateway.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error):
        if self.refused:
            return
        if self in self.gateway.sessions:
            self.gateway.sessions.discard(self)
            self.gateway.limits.release(self.client_ip)
            metrics.SESSIONS.labels(self.listener.endpoint, self._ended_by).inc()
        super().connection_lost(error)

    async def smtp_QUIT(self, arg: str):
        self._ended_by = "quit"
        await super().smtp_QUIT(arg)

    def _timeout_cb(self):
        self._ended_by = "timeout"
        if self.transport is not None:
            self.transport.write(IDLE_TIMEOUT.encode() + b"\r\n")
        super()._timeout_cb()

    def close_with(self, status: str) -> None:
        if status == SHUTTING_DOWN:
            self._ended_by = "shutdown"
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(status.encode() + b"\r\n")
            self.transport.close()

    def in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None

    def tls_active(self) -> bool:
        return self.listener.implicit_tls or self._tls_protocol is not None

    def tls_version(self) -> str:
        if not self.tls_active() or self.transport is None:
            return ""
        ssl_object = self.transport.get_extra_info("ssl_object")
        return ssl_object.version() if ssl_object is not None else ""

    @syntax("STARTTLS")
    async def smtp_STARTTLS(self, arg: str):
        if self.tls_active():  # aiosmtpd would start a second TLS layer inside the first
            await self.push(TLS_ALREADY_ACTIVE)
            return
        await super().smtp_STARTTLS(arg)

    async def push(self, status):
        if isinstance(status, str) and not self._verbatim:
            status = with_enhanced_code(status)
        await super().push(status)

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname):
        refusal = storable.helo_refusal(hostname) if hostname else ""
        if refusal:
            await self.push(refusal)
            return
        await super().smtp_HELO(hostname)

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname):
        refusal = storable.helo_refusal(hostname) if hostname else ""
        if refusal:
            await self.push(refusal)
            return
        self._verbatim = True  # EHLO lines carry no enhanced codes (RFC 2034)
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._verbatim = False

    # --- message data -------------------------------------------------------------------------
    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA command with the data read by :class:`DataReader`: the same replies
        and state changes, in memory bounded by the size limit and time linear in the bytes."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = DataReader(self.line_length_limit, self.data_size_limit)
        try:
            await read_data(self._reader, data)
        except asyncio.CancelledError:
            log.info("Connection lost during DATA")
            self._writer.close()
            raise
        if data.error:
            metrics.transaction_ended(self.listener.endpoint, data.error)
            await self.push(data.error)
            self._set_post_data_state()
            return
        if data.smuggling:
            status = self.event_handler.log(self, self.session, self.envelope, SMUGGLING)
        else:
            content = data.take_content()
            self.envelope.content = self.envelope.original_content = content
            status = MISSING
            if "DATA" in self._handle_hooks:
                status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    # --- authentication -----------------------------------------------------------------------
    async def check_auth_needed(self, caller_method: str) -> bool:
        if getattr(self.session, "identity", None) is not None:
            return False
        if self.listener.endpoint == Endpoint.BOUNCE:
            return False  # the bounce MX: no AUTH; RCPT takes only our VERP addresses
        identity = await self.gateway.run_blocking(credentials.identity_for_address, self.client_ip)
        if identity is not None:
            self.session.identity = identity
            self.session.auth_mechanism = ""
            return False
        await self.push(AUTH_REQUIRED)
        return True

    def offered_mechanisms(self) -> list[str]:
        if settings.SMTP_REQUIRE_TLS_FOR_PLAIN_AUTH and not self.tls_active():
            return [m for m in AUTH_MECHANISMS if m not in CLEARTEXT_MECHANISMS]
        return list(AUTH_MECHANISMS)

    async def smtp_AUTH(self, arg):
        if self.listener.endpoint == Endpoint.BOUNCE:
            await self.push(NO_AUTH_AT_BOUNCE_MX)
            return
        mechanism = (arg or "").split(" ", 1)[0].upper()
        label = mechanism if mechanism in AUTH_MECHANISMS else "other"
        if self.gateway.throttle.blocked(self.client_ip):
            metrics.AUTH.labels(label, "throttled").inc()
            await self.push(TOO_MANY_FAILURES)
            self.transport.close()
            return
        if mechanism in CLEARTEXT_MECHANISMS and mechanism not in self.offered_mechanisms():
            await self.push("538 5.7.11 Encryption required for requested authentication mechanism")
            return
        if arg and mechanism:
            arg = mechanism + arg[len(mechanism) :]
        already = self.session.authenticated
        await super().smtp_AUTH(arg)
        if not already and arg:
            metrics.AUTH.labels(label, "success" if self.session.authenticated else "failure").inc()
        if self.session.authenticated and getattr(self.session, "identity", None) is None:
            self.session.identity = self.session.auth_data
            self.session.auth_mechanism = mechanism

    async def _verify(self, mechanism: str, username: str, check) -> AuthResult:
        """Look the user name up (in the thread pool) and apply ``check(secret)``."""
        refusal = await self.gateway.throttle.refusal(self.client_ip, username)
        if refusal:  # the shared counters say no, whichever process counted the failures
            await self.push(refusal)
            if refusal.startswith("421"):
                self.transport.close()
            return AuthResult(success=False, handled=True)
        if storable.storage_problem(username):  # no look-up can match it (nor hold it: NUL)
            await self.gateway.throttle.record_failure(self.client_ip, username)
            return AuthResult(success=False, handled=False, message=credentials.BAD_CREDENTIALS)
        try:
            credential = credentials.cached(username)
            if credential is credentials.MISS:
                credential = await self.gateway.run_blocking(credentials.lookup, username)
        except Exception:
            log.exception("credential look-up failed")
            return AuthResult(success=False, handled=False, message=TEMPORARY_AUTH_FAILURE)
        verified = credential is not None and check(credential.secret)
        if not verified:
            await self.gateway.throttle.record_failure(self.client_ip, username)
            log.info(
                "AUTH %s refused for %s from %s",
                mechanism,
                credentials.username_label(username),
                self.client_ip,
            )
            return AuthResult(success=False, handled=False, message=credentials.BAD_CREDENTIALS)
        if credential.refusal:
            log.info(
                "AUTH %s for %s refused: %s",
                mechanism,
                credentials.username_label(username),
                credential.refusal,
            )
            return AuthResult(success=False, handled=False, message=credential.refusal)
        return AuthResult(success=True, auth_data=credential.identity)

    async def _read_response(self, challenge: bytes | str, args: list[str], initial: bool):
        """The client's base64-decoded answer: the initial response if allowed, else a 334 round."""
        if initial and len(args) > 1:
            try:
                return base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return MISSING
        return await self.challenge_auth(challenge)

    async def challenge_auth(self, challenge, encode_to_b64=True, log_client_response=False):
        """aiosmtpd's AUTH round, with an over-long answer refused as RFC 4954 says (500 5.5.6)
        instead of an exception logged with its traceback. Answers are never logged."""
        challenge = challenge.encode() if isinstance(challenge, str) else challenge
        await self.push(b"334 " + (base64.b64encode(challenge) if encode_to_b64 else challenge))
        try:
            line = await self._reader.readuntil()
        except asyncio.LimitOverrunError as error:
            await self._reader.read(error.consumed)
            while True:  # skip the rest of the line, however long
                try:
                    await self._reader.readuntil()
                    break
                except asyncio.LimitOverrunError as more:
                    await self._reader.read(more.consumed)
            await self.push(AUTH_LINE_TOO_LONG)
            return MISSING
        except asyncio.IncompleteReadError:  # the client left mid-exchange
            return MISSING
        blob = line.strip()
        if blob == b"*":
            await self.push("501 5.7.0 Auth aborted")
            return MISSING
        try:
            return base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            await self.push("501 5.5.2 Can't decode base64")
            return MISSING

    async def auth_PLAIN(self, _, args: list[str]) -> AuthResult:
        data = await self._read_response(b"", args, initial=True)
        if data is MISSING:
            return AuthResult(success=False, handled=True)
        parts = data.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        username = parts[1].decode("utf-8", "replace")
        password = parts[2].decode("utf-8", "replace")
        return await self._verify("PLAIN", username, lambda secret: same(password, secret))

    async def auth_LOGIN(self, _, args: list[str]) -> AuthResult:
        login = await self._read_response(self.AuthLoginUsernameChallenge, args, initial=True)
        if login is MISSING:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        username = login.decode("utf-8", "replace")
        secret_given = password.decode("utf-8", "replace")
        return await self._verify("LOGIN", username, lambda secret: same(secret_given, secret))

    async def auth_CRAM__MD5(self, _, args: list[str]) -> AuthResult:
        challenge = sasl.cram_md5_challenge(self.hostname)
        response = await self.challenge_auth(challenge)
        if response is MISSING:
            return AuthResult(success=False, handled=True)
        try:
            username, digest = sasl.cram_md5_parse(response)
        except sasl.SaslError:
            await self.push("501 5.5.2 Malformed CRAM-MD5 response")
            return AuthResult(success=False, handled=True)
        return await self._verify(
            "CRAM-MD5", username, lambda secret: sasl.cram_md5_verify(secret, challenge, digest)
        )

    async def auth_DIGEST__MD5(self, _, args: list[str]) -> AuthResult:
        realm = self.hostname
        challenge, nonce = sasl.digest_md5_challenge(realm)
        response = await self.challenge_auth(challenge)
        if response is MISSING:
            return AuthResult(success=False, handled=True)
        try:
            fields = sasl.digest_md5_parse(response)
        except sasl.SaslError as exc:
            await self.push(f"501 5.5.2 Malformed DIGEST-MD5 response: {exc}"[:200])
            return AuthResult(success=False, handled=True)
        rspauth = ""

        def check(secret: str) -> bool:
            nonlocal rspauth
            rspauth = sasl.digest_md5_verify(fields, secret, nonce, realm) or ""
            return bool(rspauth)

        result = await self._verify("DIGEST-MD5", fields.get("username", ""), check)
        if not result.success:
            return result
        # RFC 2831: prove that we know the secret too, and wait for the client's empty answer.
        answer = await self.challenge_auth(sasl.digest_md5_rspauth_message(rspauth))
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        return result


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


@functools.cache
def _names_with_prefix(cls: type, prefixes: tuple[str, ...]) -> list[str]:
    return [name for name in dir(cls) if name.startswith(prefixes)]


class TransactionHandler:
    """aiosmtpd hooks for the mail transaction: EHLO keywords, MAIL, RCPT and DATA."""

    def __init__(self, gateway: Gateway, listener: Listener):
        self.gateway = gateway
        self.listener = listener

    def __dir__(self):
        return _names_with_prefix(type(self), ("handle_", "auth_"))

    async def handle_EHLO(self, server: GatewaySMTP, session, envelope, hostname, responses):
        session.host_name = hostname
        lines = [r for r in responses if not r.startswith(("250-AUTH", "250 HELP"))]
        lines += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        if self.listener.endpoint == Endpoint.BOUNCE:
            lines[-1] = "250 ENHANCEDSTATUSCODES"
        else:
            lines.append("250 AUTH " + " ".join(server.offered_mechanisms()))
        return lines

    async def handle_MAIL(self, server: GatewaySMTP, session, envelope, address, options):
        server._mail_started = time.monotonic()
        refusal = storable.sender_refusal(address)
        if refusal:
            return self.log(server, session, envelope, refusal)
        if self.listener.endpoint == Endpoint.BOUNCE:
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
            return await self.store(server, session, envelope, row)

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
