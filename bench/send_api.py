"""Send API benchmark: ``POST /email/batch`` under gunicorn against the SMTP gateway's accept
rate, in one run.

    python -m bench.send_api [--batches N] [--batch-size 500] [--size 2048] [--workers 2]
        [--clients 2] [--messages M] [--database sqlite|postgres] [--quick] [--json PATH]

Everything runs on loopback in a throwaway environment (``bench_send_<pid>`` on PostgreSQL when
127.0.0.1:5432 answers, else SQLite, and a temporary DATA_DIR), removed at the end:

1. migrate, then create a server with its API token and an SMTP token;
2. start the gateway (``runsmtp``, ``--workers`` processes) and gunicorn (``postmark_site.wsgi``,
   ``--workers`` sync workers), both on the embedded queue, no Celery worker: what is measured
   is the accept — committed, processed for HTTP, queued — not the delivery;
3. the gateway: ``bench.loadgen`` sends M messages of ``--size`` bytes (AUTH PLAIN, one per
   connection, concurrency 50), after a warm-up;
4. the API: ``--clients`` threads POST N batches of ``--batch-size`` messages of ``--size``
   bytes of text each (the same JSON body every time, one recipient each), after a warm-up
   batch; messages/s is every message answered ErrorCode 0 over the wall-clock time;
5. checks that every MessageID answered is an outbound message in the database;
6. prints the figures and PASS/MISS for the goal: >= 2,000 messages/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

from bench.common import (
    benchmark_parser,
    cpu_seconds,
    django_script,
    free_port,
    gateway_env,
    goal_lines,
    manage,
    reachable,
    run_benchmark,
    scratch_dir,
    start,
    start_gateway,
    step,
    throwaway_database,
)
from bench.loadgen import run_load

GOAL_MESSAGES_PER_SECOND = 2000.0
SENDER, RECIPIENT = "load@example.com", "sink@example.com"

# A server with an SMTP token; the load's sender domain (example.com) verified.
SETUP = """
import json
from domains.models import Domain
from streams.services import create_server, create_smtp_token, get_stream
Domain.objects.get_or_create(name="example.com", defaults={"dkim_verified": True})
server = create_server("Send API benchmark")
token, secret = create_smtp_token(get_stream(server, "outbound"))
print(json.dumps({"token": server.api_tokens[0], "user": token.access_key, "password": secret}))
"""

COUNT = """
import json, sys, django
django.setup()
from messages.models import OutboundMessage
ids = json.load(open(sys.argv[1]))
found = set()
for start in range(0, len(ids), 5000):
    found.update(str(i) for i in OutboundMessage.objects.filter(
        message_id__in=ids[start:start + 5000]).values_list("message_id", flat=True))
print(json.dumps({"answered": len(ids), "stored": len(found & set(ids))}))
"""


def batch_body(count: int, size: int) -> bytes:
    """``count`` messages with ``size`` bytes of text each, as one JSON array."""
    line = "The quick brown fox jumps over the lazy dog, again and again. " * 2
    text = (line.strip() + "\n") * (size // len(line) + 1)
    item = {
        "From": f"Sender <{SENDER}>",
        "To": f"Recipient <{RECIPIENT}>",
        "Subject": "Benchmark message",
        "Tag": "bench",
        "Metadata": {"run": "send-api"},
        "TextBody": text[:size],
        "MessageStream": "outbound",
    }
    return json.dumps([item] * count).encode()


def post_batches(port: int, token: str, body: bytes, batches: int, clients: int) -> dict:
    """POST ``batches`` copies of ``body`` to /email/batch from ``clients`` threads."""
    import requests

    url = f"http://127.0.0.1:{port}/email/batch"
    headers = {"X-Postmark-Server-Token": token, "Content-Type": "application/json",
               "Accept": "application/json"}  # fmt: skip
    lock = threading.Lock()
    state = {"left": batches, "ok": 0, "failed": 0, "ids": [], "latencies": [], "errors": []}

    def client():
        session = requests.Session()
        while True:
            with lock:
                if state["left"] <= 0:
                    return
                state["left"] -= 1
            started = time.monotonic()
            try:
                response = session.post(url, data=body, headers=headers, timeout=300)
                answers = response.json() if response.status_code == 200 else []
            except (requests.RequestException, ValueError) as exc:
                with lock:
                    state["errors"].append(repr(exc))
                continue
            elapsed = time.monotonic() - started
            ok = [a["MessageID"] for a in answers if a.get("ErrorCode") == 0]
            with lock:
                state["latencies"].append(elapsed)
                state["ok"] += len(ok)
                state["failed"] += len(answers) - len(ok) if answers else 1
                state["ids"] += ok
                if response.status_code != 200 or len(ok) != len(answers):
                    state["errors"].append(f"HTTP {response.status_code}: {response.text[:300]}")

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    latencies = sorted(state["latencies"])
    return {
        "batches": batches,
        "messages_ok": state["ok"],
        "messages_failed": state["failed"],
        "seconds": round(seconds, 3),
        "messages_per_second": round(state["ok"] / seconds, 1) if seconds else 0.0,
        "batch_median_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else 0,
        "batch_max_ms": round(latencies[-1] * 1000, 1) if latencies else 0,
        "errors": state["errors"][:5],
        "ids": state["ids"],
    }


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (gunicorn's workers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def start_gunicorn(stack, env: dict, port: int, workers: int, log_dir):
    args = [sys.executable, "-m", "gunicorn", "postmark_site.wsgi", "--workers", str(workers),
            "--bind", f"127.0.0.1:{port}", "--timeout", "300",
            "--log-level", "warning"]  # fmt: skip
    service = start(stack, "gunicorn", args, env, log_dir)
    deadline = time.monotonic() + 60
    while not reachable("127.0.0.1", port, 0.2):
        if time.monotonic() > deadline or service.proc.poll() is not None:
            raise RuntimeError(f"gunicorn did not start:\n{service.output()[-3000:]}")
        time.sleep(0.1)
    return service


def run(cfg: argparse.Namespace, stack: contextlib.ExitStack) -> dict:
    work = scratch_dir(stack, "sendapibench-")
    data_dir = work / "data"
    if cfg.database == "postgres":
        database_url = throwaway_database(stack, f"bench_send_{os.getpid()}")
    else:
        database_url = f"sqlite:///{data_dir / 'bench.sqlite3'}"
    env = gateway_env(database_url, data_dir)
    env["LOG_LEVEL"] = "WARNING"
    step("preparing the database (migrate, server, tokens)")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    creds = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
    result = {"config": vars(cfg).copy()}

    step(f"the gateway ({cfg.workers} process(es)): {cfg.messages} messages over SMTP")
    gateway_port = free_port()
    _, gateway_pids = start_gateway(stack, gateway_env(database_url, data_dir), gateway_port,
                                    cfg.workers, work, "gateway")  # fmt: skip
    load = dict(host="127.0.0.1", port=gateway_port, user=creds["user"],
                password=creds["password"], concurrency=cfg.concurrency, size=cfg.size,
                sender=SENDER, to=RECIPIENT, processes=2)  # fmt: skip
    run_load(messages=min(200, cfg.messages), **load)
    before = sum(cpu_seconds(pid) for pid in gateway_pids)
    result["smtp"] = run_load(messages=cfg.messages, **load)
    used = sum(cpu_seconds(pid) for pid in gateway_pids) - before
    result["smtp"]["cpu_ms_per_message"] = round(used * 1000 / max(cfg.messages, 1), 3)

    step(f"gunicorn ({cfg.workers} worker(s)): {cfg.batches} batches of {cfg.batch_size}")
    port = free_port()
    gunicorn = start_gunicorn(stack, env, port, cfg.workers, work)
    body = batch_body(cfg.batch_size, cfg.size)
    result["body_bytes"] = len(body)
    post_batches(port, creds["token"], body, cfg.clients, cfg.clients)  # warm-up
    workers = children(gunicorn.proc.pid)
    before = sum(cpu_seconds(pid) for pid in workers)
    api = post_batches(port, creds["token"], body, cfg.batches, cfg.clients)
    used = sum(cpu_seconds(pid) for pid in workers) - before
    api["cpu_ms_per_message"] = round(used * 1000 / max(api["messages_ok"], 1), 3)
    ids_path = work / "ids.json"
    ids_path.write_text(json.dumps(api.pop("ids")))
    result["api"] = api
    step("checking that every MessageID answered is stored")
    result["stored"] = django_script(env, COUNT, str(ids_path))
    smtp_rate = result["smtp"]["messages_per_second"]
    result["ratio_to_smtp"] = round(api["messages_per_second"] / smtp_rate, 2) if smtp_rate else 0
    result["goals"] = goals(result)
    return result


def goals(result: dict) -> list[dict]:
    api, stored = result["api"], result["stored"]
    rate = api["messages_per_second"]
    return [
        {
            "goal": f"send API: POST /email/batch >= {GOAL_MESSAGES_PER_SECOND:,.0f} messages/s",
            "measured": f"{rate:,.0f}/s ({result['ratio_to_smtp']:.2f}x the gateway's "
            f"{result['smtp']['messages_per_second']:,.0f}/s)",
            "passed": rate >= GOAL_MESSAGES_PER_SECOND and not api["messages_failed"],
            "note": result["config"]["database"],
        },
        {
            "goal": "send API: every MessageID answered is stored",
            "measured": f"{stored['stored']:,} of {stored['answered']:,}",
            "passed": stored["stored"] == stored["answered"] and stored["answered"] > 0,
            "note": "",
        },
    ]


def report(result: dict) -> str:
    cfg, api, smtp = result["config"], result["api"], result["smtp"]
    lines = [
        f"send API benchmark ({cfg['database']}; {cfg['workers']} gunicorn workers and gateway "
        f"processes; messages of {cfg['size']} bytes)",
        f"  {'SMTP gateway (loadgen, AUTH PLAIN)':<44}{smtp['messages_per_second']:>10,.0f} msg/s"
        f"  ({smtp['messages_ok']} ok, {smtp['messages_failed']} failed)",
        f"  {'POST /email/batch (' + str(cfg['batch_size']) + ' per batch)':<44}"
        f"{api['messages_per_second']:>10,.0f} msg/s  ({api['messages_ok']} ok, "
        f"{api['messages_failed']} failed; batch median {api['batch_median_ms']} ms, "
        f"max {api['batch_max_ms']} ms)",
        f"  {'API / gateway':<44}{result['ratio_to_smtp']:>10.2f}x",
        f"  {'CPU per message: gateway processes':<44}{smtp['cpu_ms_per_message']:>10.3f} ms",
        f"  {'CPU per message: gunicorn workers':<44}{api['cpu_ms_per_message']:>10.3f} ms",
    ]
    if api["errors"]:
        lines.append(f"  errors: {api['errors']}")
    return "\n".join(lines + goal_lines(result["goals"]))


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser("bench.send_api", __doc__, "4 batches, 300 SMTP messages")
    add = parser.add_argument
    add("--batches", type=int, help="batches in the measured run (default 20; --quick 4)")
    add("--batch-size", type=int, default=500, help="messages per batch (default 500)")
    add("--size", type=int, default=2048, help="text bytes per message (default 2048)")
    add("--workers", type=int, default=2, help="gunicorn workers and gateway processes")
    add("--clients", type=int, default=2, help="concurrent API clients (default 2)")
    add("--messages", type=int, help="SMTP messages (default 5000; --quick 300)")
    add("--concurrency", type=int, default=50, help="SMTP sessions at once (default 50)")
    add("--database", choices=["sqlite", "postgres"], help="default: postgres if reachable")
    cfg = parser.parse_args(argv)
    if cfg.batches is None:
        cfg.batches = 4 if cfg.quick else 20
    if cfg.messages is None:
        cfg.messages = 300 if cfg.quick else 5000
    if cfg.database is None:
        cfg.database = "postgres" if reachable("127.0.0.1", 5432) else "sqlite"
    return cfg


def main(argv=None) -> int:
    result = run_benchmark(parse_args(argv), run, report)
    return 0 if result["api"]["messages_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
