"""Baseline SMTP sink: bare aiosmtpd that accepts and discards every message.

Used to measure what aiosmtpd itself costs, as a reference for the gateway::

    python -m bench.sink --host 127.0.0.1 --port 2525 [--processes 2] [--auth] [--starttls]

Replies ``250 2.0.0 Ok: queued as <uuid>`` to DATA. Prints ``ready`` on stdout once every
process listens (the address goes to stderr) and exits cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import uuid
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult

from smtpgw.tls import write_self_signed

DATA_SIZE_LIMIT = 10 * 1024 * 1024
SERVER_HOSTNAME = "sink.localhost"


class SinkHandler:
    """Discard every message."""

    async def handle_DATA(self, server, session, envelope) -> str:
        return f"250 2.0.0 Ok: queued as {uuid.uuid4()}"


def accept_any(server, session, envelope, mechanism, auth_data) -> AuthResult:
    """aiosmtpd authenticator that accepts any credentials."""
    return AuthResult(success=True)


def make_self_signed(directory: str) -> tuple[str, str]:
    """Write a throwaway self-signed certificate for localhost (the gateway's own generator, so
    both sides of a STARTTLS comparison use the same kind of key); return (cert, key) paths."""
    cert, key = Path(directory) / "sink-cert.pem", Path(directory) / "sink-key.pem"
    write_self_signed(cert, key, "localhost")
    return str(cert), str(key)


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve(args: argparse.Namespace, port: int, on_ready) -> None:
    """Listen on ``args.host:port`` until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tls_context = server_tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    handler = SinkHandler()

    def make_protocol() -> SMTP:
        return SMTP(
            handler,
            hostname=SERVER_HOSTNAME,
            data_size_limit=DATA_SIZE_LIMIT,
            decode_data=False,
            tls_context=None if args.tls else tls_context,
            authenticator=accept_any if args.auth else None,
            auth_require_tls=not args.auth,
            loop=loop,
        )

    server = await loop.create_server(
        make_protocol,
        args.host,
        port,
        reuse_port=args.processes > 1,
        ssl=tls_context if args.tls else None,
    )
    on_ready(server.sockets[0].getsockname()[1])
    await stop.wait()
    server.close()


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def child_main(args: argparse.Namespace, port: int, ready) -> None:
    """One of several SO_REUSEPORT processes."""
    die_with_parent()
    asyncio.run(serve(args, port, lambda _port: ready.put(os.getpid())))


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket so port 0 resolves to one shared port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def announce(host: str, port: int, processes: int) -> None:
    print(f"sink listening on {host}:{port} ({processes} processes)", file=sys.stderr)
    print("ready", flush=True)


def run_forked(args: argparse.Namespace) -> int:
    """Fork ``args.processes`` listeners sharing the port; wait for them."""
    reserved = reserve_port(args.host, args.port)
    port = reserved.getsockname()[1]
    context = multiprocessing.get_context("fork")
    ready = context.Queue()
    children = [
        context.Process(target=child_main, args=(args, port, ready)) for _ in range(args.processes)
    ]
    for child in children:
        child.start()

    def stop_children(*_):
        for child in children:
            if child.is_alive():
                child.terminate()

    signal.signal(signal.SIGTERM, stop_children)
    signal.signal(signal.SIGINT, stop_children)
    try:
        for _ in children:
            ready.get(timeout=30)
    except queue.Empty:
        print("sink: a child process failed to start", file=sys.stderr)
        stop_children()
        return 1
    finally:
        reserved.close()
    announce(args.host, port, args.processes)
    for child in children:
        child.join()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--processes", type=int, default=1, help="SO_REUSEPORT listeners")
    parser.add_argument("--auth", action="store_true", help="accept AUTH with any password")
    parser.add_argument("--starttls", action="store_true", help="offer STARTTLS")
    parser.add_argument("--tls", action="store_true", help="implicit TLS instead of STARTTLS")
    parser.add_argument("--tls-cert", help="PEM certificate (self-signed if omitted)")
    parser.add_argument("--tls-key", help="PEM private key")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # aiosmtpd 1.4.6 logs a "login_data is deprecated" warning on every successful AUTH.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    if bool(args.tls_cert) != bool(args.tls_key):
        sys.exit("--tls-cert and --tls-key go together")
    temp_dir = None
    if (args.starttls or args.tls) and not args.tls_cert:
        temp_dir = tempfile.mkdtemp(prefix="smtpsink-")
        args.tls_cert, args.tls_key = make_self_signed(temp_dir)
    try:
        if args.processes > 1:
            return run_forked(args)
        asyncio.run(serve(args, args.port, lambda port: announce(args.host, port, 1)))
        return 0
    finally:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
