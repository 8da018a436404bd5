"""Gateway benchmark: the SMTP gateway against a bare aiosmtpd sink, in one run.

    python -m bench.gateway [--messages N] [--concurrency C] [--size BYTES] [--processes P]
        [--starttls] [--database sqlite|postgres] [--quick] [--json PATH]

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
7. print a table and a PASS/MISS line per goal; ``--json PATH`` writes every figure.

Exit status 1 when the durability check fails or the gateway failed a message.
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
import time
import uuid
from pathlib import Path

from bench.common import (
    benchmark_parser,
    find_tool,
    free_port,
    gateway_env,
    goal_lines,
    manage,
    model_tables,
    raise_fd_limit,
    reachable,
    run_benchmark,
    scratch_dir,
    start,
    start_gateway,
    start_smtp_sink,
    step,
    throwaway_database,
)
from bench.loadgen import run_load

SENDER, RECIPIENT = "load@example.com", "sink@example.com"

# Goals of the gateway issue.
GOAL_RATIO = 1.0
GOAL_P99_MS = 50.0
GOAL_RSS_MB = 150.0
GOAL_CONCURRENCY = 50

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


def compare(cfg, sink_port: int, gateway_port: int, creds: dict, work: Path) -> dict:
    """Warm up, then sink, gateway, sink, gateway; keep the better run of each."""
    runs = {"sink": [], "gateway": []}
    ids_file = str(work / "gateway-ids.txt")
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
    """One PASS/MISS entry per goal of the issue, with the conditions it was measured under."""
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
    return [
        {"goal": goal, "passed": passed, "measured": measured, "note": note}
        for goal, passed, measured, note in entries
    ]


def report(result: dict) -> str:
    """The human-readable table."""
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
    loadgen = result["loadgen"]
    labels = {"sink": "aiosmtpd sink (bench.sink --auth)", "gateway": "gateway (runsmtp)"}
    for name, label in labels.items():
        best = loadgen["best"][name]
        every = ", ".join(f"{r['messages_per_second']:.0f}" for r in loadgen["runs"][name])
        failed = sum(r["messages_failed"] for r in loadgen["runs"][name])
        lines.append(
            f"  {label:<34}{best['messages_per_second']:>9.1f}{best['p50_ms']:>9.1f}"
            f"{best['p99_ms']:>9.1f}{failed:>8}   {every}"
        )
    lines.append(f"  {'gateway / sink':<34}{loadgen['ratio']:>8.2f}x")
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
        "",
        *goal_lines(result["goals"]),
    ]
    return "\n".join(lines)


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
    result["goals"] = goals(result)
    return result


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
    cfg = parser.parse_args(argv)
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
    gateway_failed = sum(r["messages_failed"] for r in result["loadgen"]["runs"]["gateway"])
    return 0 if result["durability"]["passed"] and not gateway_failed else 1


if __name__ == "__main__":
    sys.exit(main())
