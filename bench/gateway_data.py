"""The gateway benchmark's step 8, the DATA phase: the same hostile inputs to a fresh one-process
gateway and a one-process sink (1 GB without CRLF: peak RSS growth; 10 MB of empty lines against
10 MB of 76-character lines: CPU time; small messages beside two clients that never end their data:
p99)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from bench.common import (
    cpu_seconds,
    free_port,
    proc_status_mb,
    reset_peak_rss,
    start_gateway,
    step,
)
from bench.gateway_steps import RECIPIENT, SENDER, start_sink
from bench.loadgen import run_load

MB = 1_000_000  # input sizes are decimal: 1 GB, 10 MB (under the 10 MiB message size limit)
EMPTY_LINE = b"\r\n"
ORDINARY_LINE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJKL\r\n"
NEVER_ENDS = 1 << 62  # bytes: a feeder that stops only when told to


def read_reply(file) -> bytes:
    """One SMTP reply (its last line)."""
    line = file.readline()
    while line[3:4] == b"-":
        line = file.readline()
    return line


def data_session(port: int) -> tuple[socket.socket, object]:
    """A session from 127.0.0.1 that has had its 354 and a header (no AUTH: the gateway has an
    IP credential for 127.0.0.1 and the sink asks for none)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=600)
    file = sock.makefile("rb")
    read_reply(file)
    commands = [b"EHLO bench.localhost", f"MAIL FROM:<{SENDER}>".encode()]
    commands += [f"RCPT TO:<{RECIPIENT}>".encode(), b"DATA"]
    for command in commands:
        sock.sendall(command + b"\r\n")
        reply = read_reply(file)
        if not reply.startswith(b"354" if command == b"DATA" else b"250"):
            sock.close()
            raise RuntimeError(f"{command!r} got {reply!r}")
    sock.sendall(b"Subject: the DATA phase\r\n\r\n")
    return sock, file


def send_data(sock, file, piece: bytes, total: int, stop=None) -> tuple[str, int]:
    """Send ``piece`` over and over, ``total`` bytes (or until ``stop`` is set), then the end of
    data; return the reply and the bytes sent."""
    block = piece * max(1, (1 << 20) // len(piece))
    sent = 0
    while sent < total and not (stop is not None and stop.is_set()):
        part = block[: total - sent]
        sock.sendall(part)
        sent += len(part)
    sock.sendall(b"\r\n.\r\n")
    return read_reply(file).decode("utf-8", "replace").strip(), sent


def endless_line(port: int, pid: int, total: int) -> dict:
    """``total`` bytes without CRLF into one DATA: the peak RSS growth of process ``pid``."""
    sock, file = data_session(port)
    try:
        time.sleep(0.3)
        exact = reset_peak_rss(pid)
        before = proc_status_mb(pid)
        cpu, started = cpu_seconds(pid), time.perf_counter()
        reply, sent = send_data(sock, file, b"y", total)
        seconds, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
        peak = proc_status_mb(pid, "VmHWM")
    finally:
        sock.close()
    return {
        "bytes": sent,
        "reply": reply,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "growth_mb": round(peak - before, 1),
        "peak_since_reset": exact,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
    }


def line_costs(port: int, pid: int, size: int, repeats: int) -> dict:
    """CPU time of process ``pid`` for a ``size``-byte message of empty lines and one of
    76-character lines, ``repeats`` times each, alternating (after one warm-up message)."""

    def cost(piece: bytes) -> tuple[float, str]:
        sock, file = data_session(port)
        try:
            started = cpu_seconds(pid)
            reply, _ = send_data(sock, file, piece, size)
            return cpu_seconds(pid) - started, reply
        finally:
            sock.close()

    cost(ORDINARY_LINE)
    totals, replies = {"empty": 0.0, "ordinary": 0.0}, set()
    for _ in range(repeats):
        for name, piece in (("ordinary", ORDINARY_LINE), ("empty", EMPTY_LINE)):
            spent, reply = cost(piece)
            totals[name] += spent
            replies.add(reply[:3])
    tick = 1 / os.sysconf("SC_CLK_TCK")
    return {
        "bytes": size,
        "repeats": repeats,
        "empty_cpu_s": round(totals["empty"], 3),
        "ordinary_cpu_s": round(totals["ordinary"], 3),
        "ratio": round(totals["empty"] / totals["ordinary"], 2) if totals["ordinary"] else None,
        # CPU time is counted in clock ticks: two readings per message
        "resolution_s": round(2 * repeats * tick, 3),
        "reply_codes": sorted(replies),
    }


def p99_beside_endless_data(port: int, creds: dict, messages: int, seconds: float) -> dict:
    """p99 of small messages alone, then beside two clients that never end their data (one
    line without CRLF, one of empty lines), each sending as fast as the server reads. Each run
    sends ``messages`` or stops starting new ones after ``seconds``, whichever comes first."""

    def small_load() -> dict:
        return run_load(
            processes=2, host="127.0.0.1", port=port, user=creds["user"],
            password=creds["password"], concurrency=10, messages=messages, size=2048,
            sender=SENDER, to=RECIPIENT, duration=seconds,
        )  # fmt: skip

    alone = small_load()
    stop, fed = threading.Event(), []

    def feeder(piece: bytes):
        sock, file = data_session(port)
        try:
            fed.append(send_data(sock, file, piece, NEVER_ENDS, stop))
        finally:
            sock.close()

    feeders = [threading.Thread(target=feeder, args=(piece,)) for piece in (b"y", EMPTY_LINE)]
    for thread in feeders:
        thread.start()
    time.sleep(0.5)
    beside = small_load()
    stop.set()
    for thread in feeders:
        thread.join(600)
    return {
        "alone_messages": alone["messages_ok"],
        "beside_messages": beside["messages_ok"],
        "alone_p99_ms": alone["p99_ms"],
        "beside_p99_ms": beside["p99_ms"],
        "alone_failed": alone["messages_failed"],
        "beside_failed": beside["messages_failed"],
        "hostile_mb": round(sum(sent for _, sent in fed) / MB, 1),
        "hostile_replies": [reply for reply, _ in fed],
    }


def data_phase(stack, env: dict, cfg, creds: dict, log_dir: Path) -> dict:
    """The same hostile DATA inputs to a fresh one-process gateway and a one-process sink."""
    gateway_port, sink_port = free_port(), free_port()
    gateway, pids = start_gateway(stack, env, gateway_port, 1, log_dir, "gateway-data")
    sink = start_sink(stack, sink_port, 1, log_dir, auth=True, starttls=False)
    servers = {"gateway": (gateway_port, pids[0]), "sink": (sink_port, sink.proc.pid)}
    result = {"endless_bytes": cfg.data_endless_mb * MB, "lines_bytes": cfg.data_lines_mb * MB}
    for name, (port, pid) in servers.items():
        step(f"DATA phase, {name}: {cfg.data_endless_mb:,} MB without CRLF")
        figures = {"endless": endless_line(port, pid, cfg.data_endless_mb * MB)}
        step(f"DATA phase, {name}: {cfg.data_lines_mb} MB of empty / 76-character lines")
        figures["lines"] = line_costs(port, pid, cfg.data_lines_mb * MB, cfg.data_repeats)
        step(f"DATA phase, {name}: small messages beside endless data")
        figures["beside"] = p99_beside_endless_data(
            port, creds, cfg.data_messages, cfg.data_seconds
        )
        result[name] = figures
    sink.stop()
    gateway.stop()
    return result
