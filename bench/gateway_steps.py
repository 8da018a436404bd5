"""The gateway benchmark's steps 1 to 7 (``bench.gateway``'s docstring lists them): the sending
identity and its provisioning, the baseline sink, the database and the rows the gateway stored,
the loadgen and smtp-source runs against the sink and the gateway, the durability check, the idle
connections' memory, and the run as ``make run`` (one gateway process and the Procfile's
worker)."""

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
    cpu_seconds,
    find_tool,
    free_port,
    manage,
    model_tables,
    prepare_vhost,
    procfile_command,
    procfile_line,
    reachable,
    start,
    start_gateway,
    step,
    throwaway_database,
)
from bench.loadgen import run_load
from bench.postfix import CountingSink

SENDER, RECIPIENT = "load@example.com", "sink@example.com"

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
