"""The gateway's metrics, and the small HTTP server ``runsmtp --http`` answers health and metrics
with (``/healthz``, ``/readyz``, ``/metrics``).

The counters live in PROMETHEUS_MULTIPROC_DIR, so the HTTP server, running in the parent of the
gateway processes (or beside the only one), reports them all.
"""

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.db import connections

from core import health
from core.metrics import SMTP_PREFIXES, Counter, Histogram, exposition

log = logging.getLogger("smtpgw")

CONNECTIONS = Counter(
    "postmark_smtp_connections_total",
    "Connections opened to the gateway, by listener kind and result (accepted, or refused: "
    "too many connections, throttled address, shutting down).",
    ["endpoint", "result"],
)
SESSIONS = Counter(
    "postmark_smtp_sessions_total",
    "SMTP sessions ended, by how: quit, disconnected, timeout, shutdown.",
    ["endpoint", "result"],
)
TRANSACTIONS = Counter(
    "postmark_smtp_transactions_total",
    "Mail transactions ended, by result (accepted, rejected, deferred) and reply code.",
    ["endpoint", "result", "code"],
)
AUTH = Counter(
    "postmark_smtp_auth_total",
    "AUTH attempts, by mechanism and result (success, failure, throttled).",
    ["mechanism", "result"],
)
ACCEPTED = Counter(
    "postmark_smtp_accepted_messages_total", "Messages accepted (committed, then 250).",
    ["endpoint"],
)  # fmt: skip
ACCEPTED_BYTES = Counter(
    "postmark_smtp_accepted_bytes_total", "Bytes of the messages accepted.", ["endpoint"]
)
COMMIT_BATCH = Histogram(
    "postmark_smtp_commit_batch_size",
    "Submissions committed together by the group committer.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
COMMIT_SECONDS = Histogram(
    "postmark_smtp_commit_seconds",
    "Seconds one group commit took (the database's transaction, fsync included).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def transaction_ended(endpoint: str, status: str) -> None:
    code = status[:3] if status[:3].isdigit() else "other"
    result = {"2": "accepted", "4": "deferred"}.get(code[0], "rejected")
    TRANSACTIONS.labels(endpoint, result, code).inc()


# --- the HTTP endpoint ----------------------------------------------------------------------------


class HealthHandler(BaseHTTPRequestHandler):
    server_version = "runsmtp"

    def do_GET(self):  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                self._answer(200, health.encode(health.liveness()), "application/json")
            elif path == "/readyz":
                ready, body = health.readiness()
                self._answer(200 if ready else 503, health.encode(body), "application/json")
            elif path == "/metrics":
                body, content_type = exposition(SMTP_PREFIXES)
                self._answer(200, body, content_type)
            else:
                self._answer(404, b'{"error": "not found"}\n', "application/json")
        finally:
            connections.close_all()  # this thread's connection; the next request opens its own

    def _answer(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815 - load balancers probe with HEAD too

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        log.debug("http %s", format % args)


def parse_address(spec: str) -> tuple[str, int]:
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--http wants HOST:PORT, not {spec!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class _HealthServer(ThreadingHTTPServer):
    daemon_threads = True


class _HealthServer6(_HealthServer):
    address_family = socket.AF_INET6


def bind_http(address: tuple[str, int]) -> ThreadingHTTPServer:
    """The health and metrics server, bound (OSError when the address is taken), not serving."""
    server_class = _HealthServer6 if ":" in address[0] else _HealthServer
    return server_class(address, HealthHandler)


def start_http(server: ThreadingHTTPServer) -> ThreadingHTTPServer:
    """Serve from a daemon thread; the caller shuts it down."""
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    log.info("health and metrics on http://%s:%d/", *server.server_address[:2])
    return server
