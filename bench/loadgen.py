"""Authenticated SMTP load generator.

A deliberately small asyncio SMTP client (no aiosmtplib) so that the client is not the
bottleneck when benchmarking the gateway. Usable from Python via :func:`run_load` or from
the shell::

    python -m bench.loadgen --port 2525 --user u --password p --concurrency 50 \\
        --messages 10000 --size 2048 --json

Every message's latency is measured from writing the end-of-data ``\\r\\n.\\r\\n`` to
reading the final reply. Connection-level errors (server down or killed) count as failed
messages; the run continues until the message count is exhausted or ``duration`` elapses.
With ``rate`` the messages are paced (that many a second in all, each session taking the next
free slot) instead of sent as fast as the server answers: a steady load under which a fault
can be watched.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import multiprocessing
import os
import queue
import ssl
import sys
import time
import uuid
from array import array
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate

MAX_ERROR_KINDS = 50
MAX_ERROR_SAMPLES = 10
BODY_LINE_LENGTH = 76
RETRY_DELAY = 0.05
CONNECTION_ERRORS = (OSError, EOFError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError)


class SMTPReplyError(Exception):
    """The server answered a command with an unexpected reply code."""

    def __init__(self, stage: str, code: int, text: bytes, latency: float | None = None):
        super().__init__(f"{stage} {code} {text.decode('utf-8', 'replace')}")
        self.stage = stage
        self.code = code
        self.latency = latency  # set for the end-of-data reply

    @property
    def kind(self) -> str:
        return f"{self.stage} {self.code}"


@dataclass
class Options:
    """Settings of one load run (per process)."""

    host: str = "127.0.0.1"
    port: int = 25
    user: str | None = None
    password: str | None = None
    auth: str = "PLAIN"
    starttls: bool = False
    tls: bool = False
    concurrency: int = 10
    messages: int = 100
    size: int = 2048
    per_connection: int = 1
    recipients: int = 1
    headers: tuple[str, ...] = ()
    sender: str = "loadgen@example.com"
    to: str = "rcpt@example.com"
    ids_file: str | None = None
    ids_times: bool = False  # each line of ids_file: "<id> <unix time of the 250>"
    rate: float | None = None  # messages per second in all (None: as fast as answered)
    duration: float | None = None
    timeout: float = 30.0
    helo: str = "loadgen.localhost"


@dataclass
class Stats:
    """Counters of one process; merged by :func:`merge_stats`."""

    ok: int = 0
    failed: int = 0
    connections: int = 0
    errors: Counter = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    latencies: array = field(default_factory=lambda: array("d"))
    started: float = 0.0
    finished: float = 0.0

    def fail(self, kind: str, detail: str) -> None:
        self.failed += 1
        if kind not in self.errors and len(self.errors) >= MAX_ERROR_KINDS:
            kind = "other"
        self.errors[kind] += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(detail[:300])


# --- message generation ---------------------------------------------------------------


def dot_stuff(data: bytes) -> bytes:
    """Return ``data`` with CRLF line endings, leading dots doubled and a final CRLF."""
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def make_body(size: int) -> bytes:
    """Plain-text body of exactly ``size`` bytes; one line starts with a dot."""
    lines = [b". this line starts with a dot to exercise dot-stuffing"]
    total = len(lines[0]) + 2
    number = 0
    while total < size:
        number += 1
        line = f"{number:06d} ".encode() + b"abcdefghijklmnopqrstuvwxyz0123456789" * 2
        line = line[:BODY_LINE_LENGTH]
        lines.append(line)
        total += len(line) + 2
    body = b"\r\n".join(lines) + b"\r\n"
    if len(body) > size:  # trim the last line but keep the CRLF ending
        body = body[: max(size - 2, 0)] + b"\r\n"[: min(size, 2)]
    return body


def recipient_list(to: str, count: int) -> list[str]:
    """``count`` recipients: ``to`` itself, or ``local+N@domain`` when count > 1."""
    if count <= 1:
        return [to]
    local, _, domain = to.partition("@")
    return [f"{local}+{n}@{domain}" for n in range(1, count + 1)]


def build_message(opts: Options, recipients: list[str], body: bytes, seq: int) -> bytes:
    """Headers plus body, dot-stuffed and ready to follow DATA (without the final dot)."""
    headers = [
        f"From: {opts.sender}",
        f"To: {', '.join(recipients)}",
        f"Subject: loadgen message {seq}",
        f"Date: {formatdate(usegmt=True)}",
        f"Message-ID: <{uuid.uuid4().hex}@loadgen.localhost>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        *opts.headers,
    ]
    head = ("\r\n".join(headers) + "\r\n\r\n").encode()
    return dot_stuff(head + body)


# --- SMTP client ----------------------------------------------------------------------


class SMTPConnection(asyncio.Protocol):
    """Minimal lock-step SMTP client connection (one reply outstanding at a time).

    A bare protocol instead of StreamReader/StreamWriter: it needs about a third less CPU
    per message, which matters when the client shares the machine with the server.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.error: BaseException | None = None
        self.paused: asyncio.Future | None = None

    # protocol callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done() and reply_complete(self.buffer):
            self.waiter.set_result(None)

    def eof_received(self) -> None:
        self.connection_lost(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.error = exc or EOFError("connection closed by server")
        for future in (self.waiter, self.paused):
            if future is not None and not future.done():
                future.set_exception(self.error)

    def pause_writing(self) -> None:
        self.paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)
        self.paused = None

    # client API
    async def reply(self) -> tuple[int, bytes]:
        """Wait for the next complete reply; return its code and (joined) text."""
        if not reply_complete(self.buffer):
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        lines = bytes(self.buffer).split(b"\r\n")[:-1]
        self.buffer.clear()
        return int(lines[0][:3]), b"\n".join(line[4:] for line in lines)

    async def command(self, line: bytes, stage: str, expect: tuple[int, ...] = (250,)) -> bytes:
        """Send one command line and return the reply text; raise on an unexpected code."""
        self.transport.write(line + b"\r\n")
        code, text = await self.reply()
        if code not in expect:
            raise SMTPReplyError(stage, code, text)
        return text

    async def write(self, data: bytes) -> None:
        """Write and wait while the transport's buffer is above its high-water mark."""
        self.transport.write(data)
        if self.paused is not None:
            await self.paused

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def reply_complete(buffer: bytearray) -> bool:
    """True when ``buffer`` ends with a final reply line (``NNN text CRLF``)."""
    if not buffer.endswith(b"\r\n"):
        return False
    start = buffer.rfind(b"\n", 0, len(buffer) - 2) + 1
    return buffer[start + 3 : start + 4] != b"-"


def client_tls_context() -> ssl.SSLContext:
    """TLS context without verification (the gateway uses a self-signed certificate)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def authenticate(conn: SMTPConnection, opts: Options) -> None:
    """AUTH PLAIN (initial response) or AUTH LOGIN."""
    user, password = opts.user.encode(), (opts.password or "").encode()
    if opts.auth.upper() == "LOGIN":
        await conn.command(b"AUTH LOGIN", "AUTH", (334,))
        await conn.command(base64.b64encode(user), "AUTH", (334,))
        await conn.command(base64.b64encode(password), "AUTH", (235,))
    else:
        token = base64.b64encode(b"\0" + user + b"\0" + password)
        await conn.command(b"AUTH PLAIN " + token, "AUTH", (235,))


async def open_session(opts: Options, tls_context: ssl.SSLContext | None) -> SMTPConnection:
    """Connect and run greeting, EHLO, optional STARTTLS and AUTH."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        SMTPConnection, opts.host, opts.port, ssl=tls_context if opts.tls else None
    )
    try:
        code, text = await conn.reply()
        if code != 220:
            raise SMTPReplyError("CONNECT", code, text)
        ehlo = b"EHLO " + opts.helo.encode()
        await conn.command(ehlo, "EHLO")
        if opts.starttls:
            await conn.command(b"STARTTLS", "STARTTLS", (220,))
            conn.transport = await loop.start_tls(conn.transport, conn, tls_context)
            await conn.command(ehlo, "EHLO")
        if opts.user is not None:
            await authenticate(conn, opts)
    except BaseException:
        conn.close()
        raise
    return conn


async def send_message(conn: SMTPConnection, opts: Options, recipients, message: bytes):
    """One MAIL/RCPT/DATA transaction; return (latency seconds, final reply text)."""
    await conn.command(f"MAIL FROM:<{opts.sender}>".encode(), "MAIL")
    for rcpt in recipients:
        await conn.command(f"RCPT TO:<{rcpt}>".encode(), "RCPT", (250, 251))
    await conn.command(b"DATA", "DATA", (354,))
    if len(message) > 65536:  # large bodies: respect flow control before the final dot
        await conn.write(message)
        message = b""
    started = time.perf_counter()
    conn.transport.write(message + b".\r\n")
    code, text = await conn.reply()
    latency = time.perf_counter() - started
    if code != 250:
        raise SMTPReplyError("EOD", code, text, latency)
    return latency, text


def queue_id(text: bytes) -> bytes | None:
    """The id from a ``... queued as <id>`` reply, if any."""
    _, found, rest = text.partition(b"queued as ")
    if not found or not rest.split():
        return None
    return rest.split()[0].strip(b"<>")


async def close_session(conn: SMTPConnection) -> None:
    """QUIT and close the connection, ignoring errors; returns None."""
    try:
        await conn.command(b"QUIT", "QUIT", (221,))
    except (*CONNECTION_ERRORS, SMTPReplyError):
        pass
    finally:
        conn.close()


# --- the run --------------------------------------------------------------------------


@dataclass
class RunState:
    """Shared by the workers of one process: remaining messages and the deadline."""

    remaining: int
    deadline: float | None
    seq: int = 0
    interval: float = 0.0  # seconds between two messages' slots (``rate``), 0: unpaced
    next_slot: float = 0.0
    stopped: bool = False

    def claim(self) -> int | None:
        """Take one message to send; None when the run is over."""
        if self.remaining <= 0:
            return None
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return None
        self.remaining -= 1
        self.seq += 1
        return self.seq

    def pace(self) -> float:
        """Seconds to wait before sending the message just claimed (its slot), 0 when unpaced."""
        if not self.interval:
            return 0.0
        now = time.monotonic()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        return slot - now

    def stop(self) -> None:
        """End the run (from any thread): no session starts another message."""
        self.stopped = True
        self.remaining = 0


async def worker(opts, state, stats, tls_context, ids_fd: int | None) -> None:
    """Send messages until the run is over, reconnecting every ``per_connection``."""
    recipients = recipient_list(opts.to, opts.recipients)
    body = make_body(opts.size)
    conn = None
    sent = 0
    while (seq := state.claim()) is not None:
        if delay := state.pace():
            await asyncio.sleep(delay)
            if state.stopped:
                break
        message = build_message(opts, recipients, body, seq)
        try:
            async with asyncio.timeout(opts.timeout):
                if conn is None:
                    stats.connections += 1
                    conn = await open_session(opts, tls_context)
                    sent = 0
                sent += 1
                latency, text = await send_message(conn, opts, recipients, message)
            stats.latencies.append(latency)
            stats.ok += 1
            if ids_fd is not None and (qid := queue_id(text)):
                stamp = f" {time.time():.3f}".encode() if opts.ids_times else b""
                os.write(ids_fd, qid + stamp + b"\n")
        except SMTPReplyError as exc:
            stats.fail(exc.kind, str(exc))
            if exc.latency is not None:
                stats.latencies.append(exc.latency)
            if conn is not None and exc.code != 421:
                conn = await reset(conn)
            else:
                conn = drop(conn)
                await asyncio.sleep(RETRY_DELAY)
        except CONNECTION_ERRORS as exc:
            stats.fail(type(exc).__name__, f"{type(exc).__name__}: {exc}")
            conn = drop(conn)
            await asyncio.sleep(RETRY_DELAY)
        if conn is not None and sent >= opts.per_connection:
            conn = await close_session(conn)
    if conn is not None:
        await close_session(conn)


def drop(conn: SMTPConnection | None) -> None:
    """Close a broken connection without QUIT; returns None for ``conn = drop(conn)``."""
    if conn is not None:
        conn.close()


async def reset(conn: SMTPConnection) -> SMTPConnection | None:
    """RSET after a rejected transaction; return the connection, or None if it broke."""
    try:
        await conn.command(b"RSET", "RSET")
        return conn
    except (*CONNECTION_ERRORS, SMTPReplyError):
        return drop(conn)


async def run_async(
    opts: Options, start_at: float | None = None, state: RunState | None = None
) -> Stats:
    """Run ``opts.concurrency`` workers in this process and return their stats. A caller that
    passes ``state`` (``RunState(opts.messages, None)``) can end the run from another thread
    with ``state.stop()``."""
    stats = Stats()
    tls_context = client_tls_context() if (opts.tls or opts.starttls) else None
    ids_fd = None
    if opts.ids_file:
        ids_fd = os.open(opts.ids_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if start_at is not None:  # line up with the other processes
        await asyncio.sleep(max(0.0, start_at - time.time()))
    stats.started = time.time()
    if state is None:
        state = RunState(remaining=opts.messages, deadline=None)
    if opts.duration:
        state.deadline = time.monotonic() + opts.duration
    if opts.rate:
        state.interval = 1.0 / opts.rate
    try:
        workers = [worker(opts, state, stats, tls_context, ids_fd) for _ in range(opts.concurrency)]
        await asyncio.gather(*workers)
    finally:
        stats.finished = time.time()
        if ids_fd is not None:
            os.close(ids_fd)
    return stats


def _process_main(opts: Options, start_at: float, results) -> None:
    """Entry point of a child process: run and put the stats on the queue."""
    try:
        results.put(asyncio.run(run_async(opts, start_at)))
    except BaseException as exc:  # reported to the parent instead of a lost traceback
        results.put(RuntimeError(f"loadgen process failed: {exc!r}"))


def split(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` near-equal integers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_processes(opts: Options, processes: int) -> list[Stats]:
    """Run the load in ``processes`` child processes; return their stats."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 0.5 + 0.2 * processes  # time for the children to import
    children = []
    shares = zip(split(opts.concurrency, processes), split(opts.messages, processes), strict=True)
    for concurrency, messages in shares:
        rate = opts.rate * concurrency / opts.concurrency if opts.rate else None
        child_opts = Options(
            **{**vars(opts), "concurrency": concurrency, "messages": messages, "rate": rate}
        )
        child = context.Process(target=_process_main, args=(child_opts, start_at, results))
        child.start()
        children.append(child)
    collected = []
    try:
        while len(collected) < len(children):
            try:
                collected.append(results.get(timeout=1.0))
            except queue.Empty:
                if all(child.exitcode is not None for child in children):
                    raise RuntimeError("a loadgen process died without a result") from None
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
    for item in collected:
        if isinstance(item, Exception):
            raise item
    return collected


def percentile(sorted_values, pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(all_stats: list[Stats], opts: Options, processes: int) -> dict:
    """Merge per-process stats into the result dict."""
    errors = Counter()
    samples: list[str] = []
    latencies = []
    for stats in all_stats:
        errors.update(stats.errors)
        samples.extend(stats.error_samples)
        latencies.extend(stats.latencies)
    latencies.sort()
    ok = sum(s.ok for s in all_stats)
    seconds = max(s.finished for s in all_stats) - min(s.started for s in all_stats)
    return {
        "messages_ok": ok,
        "messages_failed": sum(s.failed for s in all_stats),
        "errors": dict(errors.most_common(MAX_ERROR_KINDS)),
        "error_samples": samples[:MAX_ERROR_SAMPLES],
        "connections": sum(s.connections for s in all_stats),
        "seconds": round(seconds, 4),
        "messages_per_second": round(ok / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "max_ms": round((latencies[-1] if latencies else 0.0) * 1000, 3),
        "concurrency": opts.concurrency,
        "processes": processes,
        "size": opts.size,
        "ids_file": opts.ids_file,
    }


def run_load(*, processes: int = 1, **options) -> dict:
    """Run a load test and return the result dict (see the module docstring).

    ``options`` are the fields of :class:`Options`. With ``processes`` > 1 the concurrency
    and message count are split over that many spawned processes. With one process the run
    happens in the calling thread via ``asyncio.run`` (so not from inside an event loop).
    """
    opts = Options(**options)
    if opts.headers and isinstance(opts.headers, str):
        opts.headers = (opts.headers,)
    opts.headers = tuple(opts.headers)
    processes = max(1, min(processes, opts.concurrency, max(opts.messages, 1)))
    if processes > 1:
        return summarize(run_processes(opts, processes), opts, processes)
    return summarize([asyncio.run(run_async(opts))], opts, processes)


# --- command line ---------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=25)
    add("--user", help="AUTH user name (no AUTH when absent)")
    add("--password", help="AUTH password")
    add("--auth", default="PLAIN", choices=["PLAIN", "LOGIN"], type=str.upper)
    add("--starttls", action="store_true", help="STARTTLS after EHLO (no verification)")
    add("--tls", action="store_true", help="implicit TLS (no verification)")
    add("--concurrency", type=int, default=10, help="concurrent sessions in total")
    add("--processes", type=int, default=1, help="OS processes to split the load over")
    add("--messages", type=int, default=100, help="messages in total")
    add("--size", type=int, default=2048, help="body size of each message in bytes")
    add("--per-connection", type=int, default=1, help="messages per connection")
    add("--recipients", type=int, default=1, help="recipients per message")
    add("--header", action="append", default=[], dest="headers", help='"Name: value"')
    add("--sender", default="loadgen@example.com", help="envelope and From: address")
    add("--to", default="rcpt@example.com", help="recipient (local+N@domain if several)")
    add("--ids-file", help="append each accepted queue id to this file")
    add("--ids-times", action="store_true", help="with each id, the unix time of its 250")
    add("--rate", type=float, help="messages per second in all (default: as fast as answered)")
    add("--duration", type=float, help="stop starting messages after this many seconds")
    add("--timeout", type=float, default=30.0, help="seconds per session setup / message")
    add("--helo", default="loadgen.localhost")
    add("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit status 1 when any message failed."""
    args = vars(parse_args(argv))
    as_json = args.pop("json")
    result = run_load(**args)
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 1 if result["messages_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
