"""Gateway benchmark: the SMTP gateway against a bare aiosmtpd sink, in one run.

    python -m bench.gateway [--messages N] [--concurrency C] [--size BYTES] [--processes P]
        [--starttls] [--database sqlite|postgres] [--as-run-only | --no-as-run] [--quick]
        [--json PATH]

Everything runs on loopback in a throwaway environment: a fresh database (``bench_<pid>`` on
PostgreSQL when 127.0.0.1:5432 answers, else SQLite) and a temporary DATA_DIR, both removed at
the end. The steps:

1. migrate, then create a server, an SMTP token and an IP credential for 127.0.0.1/32;
2. start the gateway (``runsmtp``) and the baseline (``python -m bench.sink --auth``) with the
   same number of processes;
3. after a warm-up, load each twice, alternating (sink, gateway, sink, gateway), with
   ``bench.loadgen`` (AUTH PLAIN, one connection per message) and keep the better run of each;
4. time Postfix's ``smtp-source`` against the gateway, ``smtp-sink`` and the sink without AUTH;
5. check that every 250 the gateway gave is a row in the submissions table;
6. hold 1,000 idle connections on a one-process gateway and read its RSS;
7. as ``make run`` runs it (PostgreSQL and RabbitMQ only): one gateway process and one Celery worker
   started by the Procfile's ``worker:`` line, on a copy of the database made before step 3 and a
   RabbitMQ virtual host of their own, the server Live and relaying to Postfix's ``smtp-sink``
   (the Python sink without it), so that the worker processes and delivers what arrives while the
   load runs; loaded as in step 3 against a one-process sink (``--as-run-only`` runs just this);
8. the DATA phase: a fresh one-process gateway and a one-process sink get the same hostile inputs,
   1 GB without CRLF (peak RSS growth), 10 MB of empty lines against 10 MB of 76-character lines
   (CPU time of the process, from /proc), and small messages beside two clients that never end
   their data (p99); ``--data-only`` runs just this step;
9. print a table and a PASS/MISS line per goal; ``--json PATH`` writes every figure.

Exit status 1 when a durability check fails or the gateway failed a message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from bench.common import (
    benchmark_parser,
    cpu_seconds,
    find_tool,
    free_port,
    gateway_env,
    goal_lines,
    manage,
    model_tables,
    prepare_vhost,
    proc_status_mb,
    procfile_command,
    procfile_line,
    raise_fd_limit,
    reachable,
    reset_peak_rss,
    run_benchmark,
    scratch_dir,
    start,
    start_gateway,
    start_smtp_sink,
    step,
    throwaway_database,
)
from bench.loadgen import run_load
from bench.postfix import CountingSink

SENDER, RECIPIENT = "load@example.com", "sink@example.com"

# Goals of the gateway issue.
GOAL_RATIO = 1.0
GOAL_P99_MS = 50.0
GOAL_RSS_MB = 150.0
GOAL_CONCURRENCY = 50
GOAL_AS_RUN_RATIO = 0.8  # one gateway process with a worker, against a one-process sink
# Goals of the fault-isolation issue for the DATA phase.
GOAL_DATA_RSS_MB = 32.0
GOAL_ENDLESS_MB = 1000  # "1 GB without CRLF"
GOAL_LINES_MB = 10  # "10 MB of empty lines against 10 MB of 76-character lines"

MB = 1_000_000  # input sizes are decimal: 1 GB, 10 MB (under the 10 MiB message size limit)
EMPTY_LINE = b"\r\n"
ORDINARY_LINE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJKL\r\n"
NEVER_ENDS = 1 << 62  # bytes: a feeder that stops only when told to

# Run with ``manage.py shell -c``: the sending identity, printed as the last line of JSON.
SETUP_SNIPPET = """
import json
from streams.models import IpCredential
from streams.services import create_server, create_smtp_token, get_stream
server = create_server("Benchmark")
stream = get_stream(server, "outbound")
token, secret = create_smtp_token(stream)
IpCredential.objects.create(stream=stream, cidr="127.0.0.1/32", description="benchmark")
print(json.dumps({"server": server.id, "user": token.access_key, "password": secret}))
"""

# Run with ``manage.py shell -c`` on the copy for the run as ``make run``: the server Live and the
# load's sender domain verified with an active DKIM key, so that the worker processes, signs and
# delivers every message as it would in production. The domain has no DNS records of ours: the
# worker's periodic re-check (-B) is off for it, or it would unverify it.
LIVE_SNIPPET = """
from domains.models import DkimKey, Domain
from servers.models import Server
domain, _ = Domain.objects.get_or_create(
    name="example.com", defaults={"dkim_verified": True, "periodic_checks": False})
if not domain.keys.filter(state="active").exists():
    DkimKey.generate(domain, state="active")
Server.objects.filter(name="Benchmark").update(delivery_type="Live")
"""


# --- processes ----------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def start_sink(stack, port: int, processes: int, log_dir: Path, *, auth: bool, starttls: bool):
    """Start the aiosmtpd baseline (``bench.sink``) on ``port``."""
    args = [sys.executable, "-m", "bench.sink", "--port", str(port)]
    args += ["--processes", str(processes)]
    args += ["--auth"] if auth else []
    args += ["--starttls"] if starttls else []
    name = "sink-auth" if auth else "sink-noauth"
    service = start(stack, name, args, dict(os.environ), log_dir)
    service.wait_for("ready")
    return service


# --- database -----------------------------------------------------------------------------------


def prepare_database(stack, kind: str, data_dir: Path) -> str:
    """Create an empty database (dropped by ``stack``); return its DATABASE_URL."""
    if kind == "sqlite":
        return f"sqlite:///{data_dir / 'bench.sqlite3'}"
    return throwaway_database(stack, f"bench_{os.getpid()}")


def stored_ids(database_url: str, table: str) -> list[uuid.UUID]:
    """Every MessageID in the submissions ``table``, read directly (not through Django)."""
    query = f"SELECT message_id FROM {table}"  # noqa: S608 - the model's own table name
    if database_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn:
            rows = conn.execute(query).fetchall()
    else:
        import psycopg

        with psycopg.connect(database_url) as conn:
            rows = conn.execute(query).fetchall()
    return [uuid.UUID(str(row[0])) for row in rows]


def provision(env: dict) -> dict:
    """Migrate, then create the server, SMTP token and IP credential; return the credentials."""
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    output = manage(env, "shell", "-c", SETUP_SNIPPET)
    return json.loads(output.strip().splitlines()[-1])


# --- measurements -------------------------------------------------------------------------------


def load(port: int, cfg: argparse.Namespace, messages: int, creds: dict, ids_file=None) -> dict:
    """One ``bench.loadgen`` run with the benchmark's options."""
    return run_load(
        processes=cfg.loadgen_processes,
        host="127.0.0.1",
        port=port,
        user=creds["user"],
        password=creds["password"],
        starttls=cfg.starttls,
        concurrency=cfg.concurrency,
        messages=messages,
        size=cfg.size,
        per_connection=cfg.per_connection,
        ids_file=ids_file,
        sender=SENDER,
        to=RECIPIENT,
    )


def compare(
    cfg, sink_port: int, gateway_port: int, creds: dict, work: Path, ids_name="gateway-ids.txt"
) -> dict:
    """Warm up, then sink, gateway, sink, gateway; keep the better run of each."""
    runs = {"sink": [], "gateway": []}
    ids_file = str(work / ids_name)
    warmup = min(cfg.warmup, cfg.messages)
    gateway_ok = 0
    if warmup:
        load(sink_port, cfg, warmup, creds)
        gateway_ok += load(gateway_port, cfg, warmup, creds, ids_file)["messages_ok"]
    for _ in range(cfg.rounds):
        runs["sink"].append(load(sink_port, cfg, cfg.messages, creds))
        result = load(gateway_port, cfg, cfg.messages, creds, ids_file)
        gateway_ok += result["messages_ok"]
        runs["gateway"].append(result)
    best = {name: max(rs, key=lambda r: r["messages_per_second"]) for name, rs in runs.items()}
    sink_rate = best["sink"]["messages_per_second"]
    ratio = best["gateway"]["messages_per_second"] / sink_rate if sink_rate else 0.0
    return {
        "runs": runs,
        "best": best,
        "ratio": round(ratio, 3),
        "gateway_250s": gateway_ok,
        "ids_file": ids_file,
    }


def smtp_source(tool: str, port: int, cfg) -> dict:
    """Time ``smtp-source`` (HELO, no AUTH) against ``port``; messages/s from wall-clock time."""
    args = [tool, "-c", "-s", str(cfg.concurrency), "-m", str(cfg.messages)]
    args += ["-l", str(cfg.size), "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}"]
    started = time.perf_counter()
    done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    ok = done.returncode == 0
    return {
        "ok": ok,
        "messages": cfg.messages if ok else 0,
        "seconds": round(seconds, 3),
        "messages_per_second": round(cfg.messages / seconds, 1) if ok else 0.0,
        "error": done.stderr.strip()[-300:],
    }


def hold_idle_connections(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` connections and read each 220 greeting; the caller closes them."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sockets.append(sock)
            greeting = b""
            while not greeting.endswith(b"\r\n"):
                chunk = sock.recv(512)
                if not chunk:
                    raise RuntimeError(f"connection {len(sockets)} closed: {greeting!r}")
                greeting += chunk
            if not greeting.startswith(b"220"):
                raise RuntimeError(f"connection {len(sockets)}: {greeting!r}")
    except BaseException:
        close_all(sockets)
        raise
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def idle_memory(stack, env: dict, count: int, log_dir: Path) -> dict:
    """RSS of a fresh one-process gateway before and while it holds ``count`` idle connections."""
    port = free_port()
    service, pids = start_gateway(stack, env, port, 1, log_dir, "gateway-memory")
    pid = pids[0]
    time.sleep(0.5)
    before = rss_mb(pid)
    sockets = hold_idle_connections(port, count)
    try:
        time.sleep(1.0)
        alive = service.proc.poll() is None
        held = rss_mb(pid)
    finally:
        close_all(sockets)
    service.stop()
    return {
        "connections": count,
        "pid": pid,
        "rss_before_mb": before,
        "rss_with_connections_mb": held,
        "kb_per_connection": round((held - before) * 1024 / count, 1) if count else 0.0,
        "alive": alive,
    }


# --- as make run --------------------------------------------------------------------------------


def as_run_database(stack, cfg, database_url: str) -> str | None:
    """A copy of the provisioned database for the run as ``make run`` (dropped by ``stack``), made
    before any load: the worker's periodic sweep would otherwise queue the earlier runs'
    submissions again, and process them during this run. None when it cannot run (the reason is
    in ``as_run_skipped``)."""
    if cfg.no_as_run or cfg.data_only or as_run_skipped(cfg):
        return None
    name = database_url.rsplit("/", 1)[1]
    return throwaway_database(stack, f"{name}_asrun", template=name)


def as_run_skipped(cfg) -> str:
    """Why the run as ``make run`` cannot happen here ("" when it can)."""
    if cfg.database != "postgres":
        return f"needs PostgreSQL, not {cfg.database}"
    if not reachable("127.0.0.1", 5672):
        return "needs RabbitMQ on 127.0.0.1:5672"
    return ""


def as_make_run(cfg, stack, env: dict, database_url: str, creds: dict, work: Path) -> dict:
    """Step 7: one ``runsmtp`` process and the Procfile's worker, loaded as in step 3 against a
    one-process sink in alternation. What a single-host install does: the worker takes CPU from
    the gateway while it processes and delivers what arrives."""
    broker = prepare_vhost(stack, f"bench_{os.getpid()}_asrun")
    step("as make run: the server Live, the sender domain verified with a DKIM key")
    as_env = {**env, "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker}
    manage(as_env, "shell", "-c", LIVE_SNIPPET)
    table = model_tables(as_env, "outbound.Submission")["outbound.Submission"]
    relay = None
    if find_tool("smtp-sink"):
        relay = CountingSink(stack, work, "smtp-sink-as-run")
        relay_port = relay.port
    else:
        relay_port = free_port()
        start_sink(stack, relay_port, 1, work, auth=False, starttls=False)
    as_env["OUTBOUND_SMTP_RELAY"] = f"smtp://127.0.0.1:{relay_port}?starttls=never"
    worker_args = procfile_command("worker")
    step(f"as make run: one gateway process and `{procfile_line('worker')}`")
    gateway_port, sink_port = free_port(), free_port()
    gateway, pids = start_gateway(stack, as_env, gateway_port, 1, work, "gateway-as-run")
    worker = start(stack, "worker-as-run", worker_args, as_env, work)
    worker.wait_for(" ready.", timeout=90)
    sink = start_sink(stack, sink_port, 1, work, auth=True, starttls=cfg.starttls)
    cpu = {"gateway": cpu_seconds(pids[0]), "worker": cpu_seconds(worker.proc.pid)}
    step("as make run: warm-up, then sink, gateway + worker, sink, gateway + worker")
    loadgen = compare(cfg, sink_port, gateway_port, creds, work, "as-run-ids.txt")
    cpu = {name: cpu_seconds(pid) - cpu[name] for name, pid in
           (("gateway", pids[0]), ("worker", worker.proc.pid))}  # fmt: skip
    delivered = relay.count() if relay else None
    worker_alive = worker.proc.poll() is None
    for service in (sink, worker, gateway):
        service.stop()
    check = durability(database_url, table, loadgen["gateway_250s"], loadgen["ids_file"])
    return {
        "worker_command": procfile_line("worker"),
        "relay": "Postfix smtp-sink (counting)" if relay else "aiosmtpd sink (bench.sink)",
        "loadgen": loadgen,
        "cpu_seconds": {name: round(seconds, 2) for name, seconds in cpu.items()},
        "delivered_during_runs": delivered,
        "worker_alive": worker_alive,
        "durability": check,
    }


# --- the DATA phase ----------------------------------------------------------------------------


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


def durability(database_url: str, table: str, gateway_250s: int, ids_file: str) -> dict:
    """Compare the rows in the submissions ``table`` with the 250s and queue ids the gateway
    gave."""
    stored = stored_ids(database_url, table)
    acknowledged = set()
    if os.path.exists(ids_file):
        acknowledged = {uuid.UUID(line) for line in Path(ids_file).read_text().split()}
    missing = len(acknowledged - set(stored))
    return {
        "table": table,
        "rows": len(stored),
        "replies_250": gateway_250s,
        "loadgen_ids_missing": missing,
        "passed": len(stored) == gateway_250s and missing == 0,
    }


# --- report -------------------------------------------------------------------------------------


def goals(result: dict) -> list[dict]:
    """One PASS/MISS entry per goal, with the conditions it was measured under."""
    entries = throughput_goals(result) if result.get("loadgen") else []
    entries += as_run_goals(result) if result.get("as_run") else []
    entries += data_goals(result["data"]) if result.get("data") else []
    return [
        {"goal": goal, "passed": passed, "measured": measured, "note": note}
        for goal, passed, measured, note in entries
    ]


def throughput_goals(result: dict) -> list[tuple]:
    """(goal, passed, measured, note) for the gateway issue's goals."""
    cfg = result["config"]
    gateway = result["loadgen"]["best"]["gateway"]
    conditions = []
    if cfg["database"] != "postgres":
        conditions.append(f"on {cfg['database']}, not PostgreSQL")
    if cfg["concurrency"] != GOAL_CONCURRENCY:
        conditions.append(f"at {cfg['concurrency']} sessions, not {GOAL_CONCURRENCY}")
    note = "; ".join(conditions)
    rss = result["memory"]["rss_with_connections_mb"] if result.get("memory") else None
    connections = result["memory"]["connections"] if result.get("memory") else 0
    entries = [
        (
            f"(a) gateway throughput >= {GOAL_RATIO:.1f}x the sink at {GOAL_CONCURRENCY} sessions,"
            " durable commits on PostgreSQL",
            result["loadgen"]["ratio"] >= GOAL_RATIO,
            f"{result['loadgen']['ratio']:.2f}x",
            note,
        ),
        (
            f"(b) p99 end-of-DATA latency <= {GOAL_P99_MS:.0f} ms at that load",
            gateway["p99_ms"] <= GOAL_P99_MS,
            f"{gateway['p99_ms']:.1f} ms",
            note,
        ),
        (
            f"(c) <= {GOAL_RSS_MB:.0f} MB RSS per gateway process with 1,000 idle connections",
            rss is not None and rss <= GOAL_RSS_MB and connections >= 1000,
            f"{rss} MB with {connections:,}" if rss is not None else "not measured",
            "" if connections >= 1000 else f"only {connections} connections",
        ),
    ]
    return entries


def as_run_goals(result: dict) -> list[tuple]:
    """(goal, passed, measured, note) for the gateway issue's goal as ``make run`` runs it."""
    goal = f"gateway as make run (1 process + worker) >= {GOAL_AS_RUN_RATIO:.1f}x the sink"
    as_run = result["as_run"]
    if as_run.get("skipped"):
        return [(goal, False, "not measured", as_run["skipped"])]
    cfg = result["config"]
    note = [] if cfg["concurrency"] == GOAL_CONCURRENCY else [f"at {cfg['concurrency']} sessions"]
    if not as_run["worker_alive"]:
        note.append("the worker exited")
    ratio = as_run["loadgen"]["ratio"]
    passed = ratio >= GOAL_AS_RUN_RATIO and as_run["worker_alive"]
    return [(goal, passed, f"{ratio:.2f}x", "; ".join(note))]


def data_goals(data: dict) -> list[tuple]:
    """(goal, passed, measured, note) for the DATA phase goals of the fault-isolation issue."""
    gateway, sink = data["gateway"], data["sink"]
    endless, lines = gateway["endless"], gateway["lines"]
    endless_note = []
    if data["endless_bytes"] < GOAL_ENDLESS_MB * MB:
        endless_note.append(f"fed {data['endless_bytes'] // MB:,} MB, not 1 GB")
    if not endless["peak_since_reset"]:
        endless_note.append("peak RSS since the process started")
    lines_note = f"{data['lines_bytes'] // MB} MB, not 10" if data["lines_bytes"] < 10 * MB else ""
    resolution = lines["resolution_s"]
    beside = gateway["beside"]
    p99_limit = max(2 * beside["alone_p99_ms"], beside["alone_p99_ms"] + 10)
    return [
        (
            f"(d) peak RSS growth of a gateway fed 1 GB without CRLF <= {GOAL_DATA_RSS_MB:.0f} MB",
            endless["growth_mb"] <= GOAL_DATA_RSS_MB and endless["reply"].startswith("500"),
            f"{endless['growth_mb']:.1f} MB (sink: {sink['endless']['growth_mb']:,.1f} MB)",
            "; ".join(endless_note),
        ),
        (
            "(e) CPU for 10 MB of empty lines <= CPU for 10 MB of 76-character lines",
            lines["empty_cpu_s"] <= lines["ordinary_cpu_s"] + resolution
            and lines["reply_codes"] == ["250"],
            f"{lines['empty_cpu_s']:.2f} s vs {lines['ordinary_cpu_s']:.2f} s"
            f" (sink: {sink['lines']['empty_cpu_s']:.2f} s vs"
            f" {sink['lines']['ordinary_cpu_s']:.2f} s)",
            "; ".join(
                filter(None, [lines_note, f"x{lines['repeats']}, +-{resolution:.2f} s clock"])
            ),
        ),
        (
            "(f) other sessions' p99 unaffected by clients that never end their DATA",
            beside["beside_p99_ms"] <= p99_limit and not beside["beside_failed"],
            f"{beside['beside_p99_ms']:.1f} ms beside, {beside['alone_p99_ms']:.1f} ms alone"
            f" (sink: {sink['beside']['beside_p99_ms']:.1f} / "
            f"{sink['beside']['alone_p99_ms']:.1f} ms)",
            "within 2x or 10 ms",
        ),
    ]


def report(result: dict) -> str:
    """The human-readable table."""
    lines = throughput_report(result) if result.get("loadgen") else []
    if result.get("as_run"):
        lines += as_run_report(result)
    if result.get("data"):
        lines += data_report(result["data"])
    return "\n".join([*lines, "", *goal_lines(result["goals"])])


def data_report(data: dict) -> list[str]:
    """The DATA phase table: the gateway and the sink side by side."""
    gateway, sink = data["gateway"], data["sink"]
    endless_mb = data["endless_bytes"] // MB
    lines_mb = data["lines_bytes"] // MB
    repeats = gateway["lines"]["repeats"]

    def row(label: str, figure) -> str:
        return f"  {label:<44}{figure(gateway):>18}{figure(sink):>18}"

    return [
        "",
        "DATA phase: one process each, the same inputs (CPU time and VmHWM from /proc)",
        f"  {'':<44}{'gateway':>18}{'aiosmtpd sink':>18}",
        row(f"{endless_mb:,} MB without CRLF: reply", lambda f: f["endless"]["reply"][:16]),
        row("  peak RSS growth", lambda f: f"{f['endless']['growth_mb']:,.1f} MB"),
        row("  seconds (CPU seconds)", lambda f: _seconds(f["endless"])),
        row(f"{lines_mb} MB of empty lines, CPU (x{repeats})", lambda f: _cpu(f, "empty")),
        row(
            f"{lines_mb} MB of 76-character lines, CPU (x{repeats})", lambda f: _cpu(f, "ordinary")
        ),
        row("  empty / 76-character", lambda f: f"{f['lines']['ratio']}x"),
        row("small messages alone: p99", lambda f: f"{f['beside']['alone_p99_ms']:.1f} ms"),
        row("  beside 2 endless DATA: p99", lambda f: f"{f['beside']['beside_p99_ms']:.1f} ms"),
        row("  messages (alone / beside)", _messages),
        row("  failed (alone / beside)", _failed),
        row("  endless DATA sent meanwhile", lambda f: f"{f['beside']['hostile_mb']:,.0f} MB"),
    ]


def _seconds(figures: dict) -> str:
    return f"{figures['seconds']:.1f} ({figures['cpu_seconds']:.1f})"


def _cpu(figures: dict, kind: str) -> str:
    return f"{figures['lines'][kind + '_cpu_s']:.2f} s"


def _messages(figures: dict) -> str:
    return f"{figures['beside']['alone_messages']} / {figures['beside']['beside_messages']}"


def _failed(figures: dict) -> str:
    return f"{figures['beside']['alone_failed']} / {figures['beside']['beside_failed']}"


def loadgen_rows(loadgen: dict, labels: dict) -> list[str]:
    """The better run of each server, every run's rate, and the ratio."""
    lines = []
    for name, label in labels.items():
        best = loadgen["best"][name]
        every = ", ".join(f"{r['messages_per_second']:.0f}" for r in loadgen["runs"][name])
        failed = sum(r["messages_failed"] for r in loadgen["runs"][name])
        lines.append(
            f"  {label:<34}{best['messages_per_second']:>9.1f}{best['p50_ms']:>9.1f}"
            f"{best['p99_ms']:>9.1f}{failed:>8}   {every}"
        )
    return [*lines, f"  {'gateway / sink':<34}{loadgen['ratio']:>8.2f}x"]


def as_run_report(result: dict) -> list[str]:
    """The run as ``make run``: one gateway process with the Procfile's worker, against a sink."""
    as_run, cfg = result["as_run"], result["config"]
    if as_run.get("skipped"):
        return ["", f"as make run: skipped ({as_run['skipped']})"]
    check = as_run["durability"]
    delivered = as_run["delivered_during_runs"]
    delivered = "not counted" if delivered is None else f"{delivered:,}"
    labels = {"sink": "aiosmtpd sink, 1 process", "gateway": "gateway, 1 process + worker"}
    return [
        "",
        f"as make run: `{as_run['worker_command']}` beside one gateway process (PostgreSQL, its "
        f"own RabbitMQ virtual host, Live server relaying to {as_run['relay']}); better of "
        f"{cfg['rounds']} alternating runs after a {cfg['warmup']}-message warm-up",
        f"  {'server':<34}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}   all runs msg/s",
        *loadgen_rows(as_run["loadgen"], labels),
        f"  CPU seconds over the runs: gateway {as_run['cpu_seconds']['gateway']:.1f}, worker "
        f"{as_run['cpu_seconds']['worker']:.1f}; delivered by their end: {delivered} of "
        f"{check['replies_250']:,} accepted",
        f"  durability: {check['rows']:,} rows, {check['replies_250']:,} replies 250, "
        f"{check['loadgen_ids_missing']} acknowledged ids missing"
        f" -> {'PASS' if check['passed'] else 'FAIL'}",
    ]


def throughput_report(result: dict) -> list[str]:
    """The throughput, latency and idle-memory part of the report."""
    cfg = result["config"]
    lines = [
        f"Gateway benchmark: {cfg['messages']:,} messages of {cfg['size']:,} bytes, "
        f"{cfg['concurrency']} sessions, {cfg['processes']} gateway/sink process(es), "
        f"{cfg['database']}, {'STARTTLS' if cfg['starttls'] else 'plain'}, "
        f"{cfg['per_connection']} message(s)/connection, {cfg['loadgen_processes']} loadgen "
        "process(es)",
        "",
        "loadgen (EHLO, AUTH PLAIN), better of "
        f"{cfg['rounds']} alternating runs after a {cfg['warmup']}-message warm-up",
        f"  {'server':<34}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}   all runs msg/s",
    ]
    labels = {"sink": "aiosmtpd sink (bench.sink --auth)", "gateway": "gateway (runsmtp)"}
    lines += loadgen_rows(result["loadgen"], labels)
    if result.get("smtp_source"):
        lines += ["", "smtp-source (HELO, no AUTH; wall-clock)"]
        lines.append(f"  {'server':<34}{'msg/s':>9}{'seconds':>9}")
        source = result["smtp_source"]
        for name, label in (
            ("smtp_sink", "Postfix smtp-sink (C ceiling)"),
            ("sink", "aiosmtpd sink (no AUTH)"),
            ("gateway", "gateway (IP credential)"),
        ):
            row = source[name]
            status = "" if row["ok"] else f"   FAILED: {row['error']}"
            lines.append(
                f"  {label:<34}{row['messages_per_second']:>9.1f}{row['seconds']:>9.2f}{status}"
            )
        if source["sink"]["messages_per_second"]:
            ratio = source["gateway"]["messages_per_second"] / source["sink"]["messages_per_second"]
            lines.append(f"  {'gateway / aiosmtpd sink':<34}{ratio:>8.2f}x")
    else:
        lines += ["", "smtp-source: not installed, skipped"]
    memory = result.get("memory")
    if memory:
        held = f"with {memory['connections']:,} idle connections"
        lines += [
            "",
            "memory (VmRSS)",
            f"  {'one-process gateway, idle':<34}{memory['rss_before_mb']:>9.1f} MB",
            f"  {held:<34}{memory['rss_with_connections_mb']:>9.1f} MB"
            f"  ({memory['kb_per_connection']:.1f} KB per connection)",
        ]
    after = result.get("rss_after_load_mb", {})
    if after:
        figures = ", ".join(f"pid {pid}: {mb:.1f} MB" for pid, mb in after.items())
        lines.append(f"  loaded gateway processes after the runs: {figures}")
    check = result["durability"]
    lines += [
        "",
        f"durability: {check['rows']:,} rows in {check['table']}, {check['replies_250']:,} "
        f"replies 250, {check['loadgen_ids_missing']} acknowledged ids missing"
        f" -> {'PASS' if check['passed'] else 'FAIL'}",
    ]
    return lines


# --- orchestration ------------------------------------------------------------------------------


def run(cfg: argparse.Namespace, stack: contextlib.ExitStack) -> dict:
    """The whole benchmark; every process and the database are cleaned up by ``stack``."""
    work = scratch_dir(stack, "smtpbench-")
    data_dir = work / "data"
    result = {"config": vars(cfg).copy(), "fd_limit": raise_fd_limit()}
    database_url = prepare_database(stack, cfg.database, data_dir)
    env = gateway_env(database_url, data_dir)
    step("preparing the database (migrate, server, SMTP token, IP credential)")
    creds = provision(env)
    as_run_url = as_run_database(stack, cfg, database_url)
    if not (cfg.data_only or cfg.as_run_only):
        throughput(cfg, stack, env, database_url, creds, work, result)
    if as_run_url:
        result["as_run"] = as_make_run(cfg, stack, env, as_run_url, creds, work)
    elif not (cfg.no_as_run or cfg.data_only):
        result["as_run"] = {"skipped": as_run_skipped(cfg)}
    if not (cfg.no_data or cfg.as_run_only):
        result["data"] = data_phase(stack, env, cfg, creds, work)
    result["goals"] = goals(result)
    return result


def throughput(cfg, stack, env: dict, database_url: str, creds: dict, work: Path, result: dict):
    """Steps 2 to 6: throughput and latency against the sink, durability, idle memory."""
    table = model_tables(env, "outbound.Submission")["outbound.Submission"]
    step(f"starting the gateway and the sink ({cfg.processes} process(es) each)")
    gateway_port, sink_port = free_port(), free_port()
    _, gateway_pids = start_gateway(stack, env, gateway_port, cfg.processes, work, "gateway")
    sink = start_sink(stack, sink_port, cfg.processes, work, auth=True, starttls=cfg.starttls)
    step("loadgen: warm-up, then sink, gateway, sink, gateway")
    loadgen = compare(cfg, sink_port, gateway_port, creds, work)
    result["loadgen"] = loadgen
    sink.stop()
    gateway_250s = loadgen["gateway_250s"]

    source_tool, sink_tool = find_tool("smtp-source"), find_tool("smtp-sink")
    if source_tool and sink_tool and not cfg.no_smtp_source:
        step("smtp-source: Postfix smtp-sink, aiosmtpd sink, gateway")
        source = {}
        port = free_port()
        service = start_smtp_sink(stack, sink_tool, port, work)
        source["smtp_sink"] = smtp_source(source_tool, port, cfg)
        service.stop()
        port = free_port()
        service = start_sink(stack, port, cfg.processes, work, auth=False, starttls=False)
        source["sink"] = smtp_source(source_tool, port, cfg)
        service.stop()
        source["gateway"] = smtp_source(source_tool, gateway_port, cfg)
        gateway_250s += source["gateway"]["messages"]
        result["smtp_source"] = source

    result["rss_after_load_mb"] = {pid: rss_mb(pid) for pid in gateway_pids}
    step(f"durability: rows in {table} against replies 250")
    result["durability"] = durability(database_url, table, gateway_250s, loadgen["ids_file"])
    if cfg.idle_connections:
        step(f"memory: {cfg.idle_connections:,} idle connections to a one-process gateway")
        result["memory"] = idle_memory(stack, env, cfg.idle_connections, work)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = benchmark_parser("bench.gateway", __doc__, "300 messages, concurrency 10 (for tests)")
    add = parser.add_argument
    add("--messages", type=int, help="messages per measured run (default 5000; --quick 300)")
    add("--concurrency", type=int, help="concurrent sessions (default 50; --quick 10)")
    add("--size", type=int, default=2048, help="body bytes per message (default 2048)")
    add("--processes", type=int, default=2, help="gateway and sink processes (default 2)")
    add("--starttls", action="store_true", help="loadgen uses STARTTLS (sink and gateway)")
    add("--database", choices=["sqlite", "postgres"], help="default: postgres if reachable")
    add("--per-connection", type=int, default=1, help="messages per connection (default 1)")
    add("--loadgen-processes", type=int, default=2, help="client processes (default 2)")
    add("--warmup", type=int, default=200, help="warm-up messages per server (default 200)")
    add("--rounds", type=int, default=2, help="alternating runs per server (default 2)")
    add("--idle-connections", type=int, default=1000, help="for the memory figure (0: skip)")
    add("--no-smtp-source", action="store_true", help="skip the smtp-source rows")
    add("--as-run-only", action="store_true", help="only the run as make run (step 7)")
    add("--no-as-run", action="store_true", help="skip the run as make run")
    add("--data-only", action="store_true", help="only the DATA phase (step 8)")
    add("--no-data", action="store_true", help="skip the DATA phase")
    add("--data-endless-mb", type=int, help="MB without CRLF (default 1000; --quick 64)")
    add("--data-lines-mb", type=int, help="MB of lines per message (default 10; --quick 2)")
    add("--data-repeats", type=int, help="messages of each kind of line (default 3; --quick 2)")
    add("--data-messages", type=int, help="small messages per p99 run (default 1000; --quick 200)")
    add("--data-seconds", type=float, help="at most, per p99 run (default 20; --quick 5)")
    cfg = parser.parse_args(argv)
    if cfg.data_only and cfg.no_data:
        parser.error("--data-only and --no-data exclude each other")
    if cfg.as_run_only and (cfg.no_as_run or cfg.data_only):
        parser.error("--as-run-only excludes --no-as-run and --data-only")
    defaults = {
        "data_endless_mb": (64, GOAL_ENDLESS_MB),
        "data_lines_mb": (2, GOAL_LINES_MB),
        "data_repeats": (2, 3),
        "data_messages": (200, 1000),
        "data_seconds": (5.0, 20.0),
    }
    for name, (quick, full) in defaults.items():
        if getattr(cfg, name) is None:
            setattr(cfg, name, quick if cfg.quick else full)
    if cfg.messages is None:
        cfg.messages = 300 if cfg.quick else 5000
    if cfg.concurrency is None:
        cfg.concurrency = 10 if cfg.quick else GOAL_CONCURRENCY
    if cfg.database is None:
        cfg.database = "postgres" if reachable("127.0.0.1", 5432) else "sqlite"
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; see the module docstring."""
    result = run_benchmark(parse_args(argv), run, report)
    checked = [result] if result.get("loadgen") else []
    if result.get("as_run", {}).get("loadgen"):
        checked.append(result["as_run"])
    for part in checked:
        gateway_failed = sum(r["messages_failed"] for r in part["loadgen"]["runs"]["gateway"])
        if gateway_failed or not part["durability"]["passed"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
