"""SMTP connections: the transcript of a conversation (for bounce dumps), opening a connection
to a host (the first of its addresses that answers; implicit TLS, opportunistic or required
STARTTLS, relay authentication), and the pool
that reuses open connections across messages, at most OUTBOUND_CONNECTIONS_PER_DESTINATION at
once per host.
"""

import smtplib
import socket
import ssl
import threading
import time
from collections import defaultdict

from django.conf import settings

from bounces.services import storable
from delivery.transport import Host, addresses_of


class Transcript(list):
    """The SMTP conversation, for bounce dumps."""

    def client(self, line: str) -> None:
        self.append(f"C: {line}")

    def server(self, code: int, text: bytes | str) -> None:
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for line in storable(text).splitlines() or [""]:
            self.append(f"S: {code} {line}")

    def text(self) -> str:
        return "\r\n".join(self)


class ConnectionPool:
    """Open SMTP connections per host, reused across messages; at most N at once per host."""

    def __init__(self, per_host: int, idle_seconds: float = 30.0):
        self.per_host = per_host
        self.idle_seconds = idle_seconds
        self._idle: dict[str, list[tuple[float, smtplib.SMTP]]] = defaultdict(list)
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def _slot(self, key: str) -> threading.BoundedSemaphore:
        with self._lock:
            if key not in self._slots:
                self._slots[key] = threading.BoundedSemaphore(self.per_host)
            return self._slots[key]

    def acquire(self, host: Host) -> smtplib.SMTP:
        self._slot(host.key).acquire()
        try:
            while True:
                with self._lock:
                    idle = self._idle[host.key]
                    entry = idle.pop() if idle else None
                if entry is None:
                    return open_connection(host)
                since, connection = entry
                if time.monotonic() - since < self.idle_seconds:
                    try:
                        if connection.rset()[0] == 250:
                            return connection
                    except (smtplib.SMTPException, OSError):
                        pass
                _close(connection)
        except BaseException:
            self._slot(host.key).release()
            raise

    def release(self, host: Host, connection: smtplib.SMTP | None, reusable: bool) -> None:
        if connection is not None:
            if reusable:
                with self._lock:
                    self._idle[host.key].append((time.monotonic(), connection))
            else:
                _close(connection)
        self._slot(host.key).release()


def _close(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        connection.close()


def _client_tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        # MX hosts often present certificates for other names; opportunistic TLS (RFC 7435)
        # still encrypts. A relay that requires TLS is verified unless configured otherwise.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Client(smtplib.SMTP):
    """smtplib's client, connecting to the first of ``addresses`` that answers (in order: an
    address family this machine cannot reach fails at once and the next is tried), while the
    host's name stays the one TLS checks and names (SNI)."""

    addresses: list[str] = []

    def _get_socket(self, host, port, timeout):
        failures = []
        for address in self.addresses or [host]:
            try:
                return socket.create_connection((address, port), timeout, self.source_address)
            except OSError as exc:
                failures.append((address, exc))
        if len(failures) == 1:
            raise failures[0][1]
        raise OSError("; ".join(f"{address}: {_reason(exc)}" for address, exc in failures))


class _TlsClient(smtplib.SMTP_SSL, _Client):
    """The same, for implicit TLS (SMTP_SSL wraps the socket ``_Client`` connected)."""


def _reason(exc: OSError) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)


def open_connection(host: Host) -> smtplib.SMTP:
    addresses = addresses_of(host.host)
    timeout = settings.OUTBOUND_TIMEOUT
    verify = settings.OUTBOUND_TLS_VERIFY and host.starttls == "require"
    if host.implicit_tls:
        connection = _TlsClient(
            local_hostname=settings.OUTBOUND_HELO, timeout=timeout,
            context=_client_tls_context(settings.OUTBOUND_TLS_VERIFY),
        )  # fmt: skip
    else:
        connection = _Client(local_hostname=settings.OUTBOUND_HELO, timeout=timeout)
    connection.addresses = addresses
    try:
        code, greeting = connection.connect(host.host, host.port)
        if code != 220:
            raise smtplib.SMTPConnectError(code, greeting)
        connection.ehlo_or_helo_if_needed()
        if not host.implicit_tls and host.starttls != "never" and connection.has_extn("starttls"):
            connection.starttls(context=_client_tls_context(verify))
            connection.ehlo()
        elif host.starttls == "require" and not host.implicit_tls:
            raise smtplib.SMTPNotSupportedError("the relay does not offer STARTTLS")
        if host.username:
            connection.login(host.username, host.password)
    except BaseException:
        connection.close()
        raise
    return connection


_pool: ConnectionPool | None = None


def pool() -> ConnectionPool:
    global _pool
    if _pool is None:
        _pool = ConnectionPool(settings.OUTBOUND_CONNECTIONS_PER_DESTINATION)
    return _pool
