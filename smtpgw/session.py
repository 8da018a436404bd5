"""One SMTP connection (:class:`GatewaySMTP`, aiosmtpd's ``SMTP`` specialised): admission and the
session's end, STARTTLS, HELO/EHLO, the DATA command with the data read by ``smtpgw.data_reader``,
and authentication (AUTH PLAIN, LOGIN, CRAM-MD5 and DIGEST-MD5, the IP credential, the shared
throttle). The mail transaction's hooks are ``smtpgw.transaction``'s."""

import asyncio
import base64
import binascii
import functools
import logging
import re

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, syntax
from django.conf import settings

from core.crypto import same
from smtpgw import credentials, metrics, sasl, storable
from smtpgw.data_reader import DataReader, read_data
from smtpgw.replies import (
    AUTH_LINE_TOO_LONG,
    AUTH_REQUIRED,
    IDLE_TIMEOUT,
    NO_AUTH_AT_BOUNCE_MX,
    NO_AUTH_AT_INBOUND_MX,
    SHUTTING_DOWN,
    SMUGGLING,
    TEMPORARY_AUTH_FAILURE,
    TLS_ALREADY_ACTIVE,
    TOO_MANY_FAILURES,
    with_enhanced_code,
)
from streams.listeners import Listener
from streams.models import Endpoint

log = logging.getLogger("smtpgw")

# The common MAIL FROM / RCPT TO path: <dot-atom@host.name>, nothing quoted, no route, no literal.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
PLAIN_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*)>")

AUTH_MECHANISMS = ("CRAM-MD5", "DIGEST-MD5", "PLAIN", "LOGIN")
CLEARTEXT_MECHANISMS = ("PLAIN", "LOGIN")


@functools.cache
def names_with_prefix(cls: type, prefixes: tuple[str, ...]) -> list[str]:
    return [name for name in dir(cls) if name.startswith(prefixes)]


class GatewaySMTP(SMTP):
    """One SMTP connection. ``gateway`` is the process's ``smtpgw.server.Gateway`` (not imported
    here: it imports this module)."""

    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, gateway, listener: Listener, handler, tls_context):
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
            data_size_limit=gateway.size_limit(listener),
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
        return names_with_prefix(type(self), ("auth_", "smtp_"))

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
        data = DataReader(
            self.line_length_limit,
            self.data_size_limit,
            header_limit=self.gateway.max_header,
            field_limit=self.gateway.max_field,
        )
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
        if self.listener.endpoint in (Endpoint.BOUNCE, Endpoint.INBOUND):
            # The MXes: no AUTH; RCPT takes only our VERP addresses, or servers' inbound ones.
            return False
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
        if self.listener.endpoint == Endpoint.INBOUND:
            await self.push(NO_AUTH_AT_INBOUND_MX)
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
