"""The webhooks' HTTP client: one POST to a receiver, after the SSRF check (``webhooks.guard``).

``http_post`` connects only to an address the guard passed (pinned connections keep the URL's
host as Host header and TLS server name), keeps one connection per host and port per thread
(``close_connections`` drops them), holds the whole request to one deadline and never raises for
network trouble: its ``Result`` says what happened.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from webhooks.guard import Target, UnsafeUrl, checked_addresses, parse_url

RESPONSE_EXCERPT_BYTES = 1024
# Answers longer than this are not read to the end; the connection is closed instead.
MAX_RESPONSE_READ = 64 * 1024


# --- HTTP -----------------------------------------------------------------------------------------


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a checked address; the Host header still names the URL's host."""

    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a checked address, with the URL's host as SNI and for certificate checks."""

    def __init__(self, host, port, address, timeout, context):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


_local = threading.local()
_tls_context: ssl.SSLContext | None = None


def _context() -> ssl.SSLContext:
    global _tls_context
    if _tls_context is None:
        _tls_context = ssl.create_default_context()
    return _tls_context


def _connections() -> dict:
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    return pool


def close_connections() -> None:
    for conn in _connections().values():
        conn.close()
    _connections().clear()


def _connect(target: Target, timeout: float):
    addresses = checked_addresses(target)
    last_error: Exception | None = None
    for address in addresses:
        if target.scheme == "https":
            conn = _PinnedHTTPSConnection(target.host, target.port, address, timeout, _context())
        else:
            conn = _PinnedHTTPConnection(target.host, target.port, address, timeout)
        try:
            conn.connect()
            return conn
        except OSError as exc:
            conn.close()
            last_error = exc
    raise last_error or OSError(f"{target.host} has no address")


@dataclass
class Result:
    status_code: int | None = None
    excerpt: str = ""
    error: str = ""
    latency_ms: int = 0
    refused: bool = False  # the SSRF guard refused the destination: retrying cannot help

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def http_post(url: str, body: bytes, headers: dict, timeout: float | None = None) -> Result:
    """POST ``body`` to ``url`` on a kept-alive connection of this thread (one per host and port),
    after the SSRF check. Never raises for network trouble: the ``Result`` says what happened."""
    timeout = float(settings.WEBHOOK_TIMEOUT if timeout is None else timeout)
    started = time.monotonic()
    result = Result()
    try:
        target = parse_url(url)
    except UnsafeUrl as exc:
        result.error, result.refused = exc.message, True
        return result
    key = (target.scheme, target.host, target.port)
    pool = _connections()
    for fresh in (False, True):
        conn = None if fresh else pool.pop(key, None)
        reused = conn is not None
        try:
            if conn is None:
                conn = _connect(target, timeout)
            else:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            with _deadline(conn, started + timeout):
                conn.request("POST", target.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read(MAX_RESPONSE_READ + 1)
            result.status_code = response.status
            result.excerpt = data[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace")
            if len(data) > MAX_RESPONSE_READ or response.will_close:
                conn.close()
            else:
                pool[key] = conn
            break
        except UnsafeUrl as exc:
            result.error, result.refused = exc.message, True
            break
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            if conn is not None:
                conn.close()
            if reused:  # a kept-alive connection the receiver had closed: once more, fresh
                continue
            result.error = _describe(exc)
            break
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if conn is not None:
                conn.close()
            result.error = _describe(exc)
            break
    result.latency_ms = int((time.monotonic() - started) * 1000)
    return result


@contextlib.contextmanager
def _deadline(conn, deadline: float):
    """One overall deadline for a POST: a receiver that dribbles its answer a byte at a time
    cannot hold the worker's thread past it (a socket timeout alone restarts with every byte)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the webhook's deadline passed")
    if conn.sock is not None:
        conn.sock.settimeout(remaining)
    expired = threading.Event()

    def cut():
        expired.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(remaining, cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if expired.is_set():
            raise TimeoutError("the webhook's deadline passed") from exc
        raise
    finally:
        timer.cancel()
    if expired.is_set():
        raise TimeoutError("the webhook's deadline passed")


def _describe(exc: Exception) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "Timed out waiting for the receiver."
    if isinstance(exc, socket.gaierror):
        return f"The host name could not be resolved ({exc})."
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:1000]
