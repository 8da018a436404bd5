"""Processing and delivery benchmark: real Celery workers on RabbitMQ, in one throwaway setup.

    python -m bench.pipeline [--messages N] [--workers 2] [--pool threads] [--concurrency 4]
        [--kill-run N] [--rss-messages N] [--only processing,e2e,kill,rss] [--quick] [--json PATH]

Everything runs on loopback in a throwaway environment: a PostgreSQL database ``bench_<pid>``, a
RabbitMQ virtual host ``bench_<pid>`` (so that no other test's worker takes these tasks, nor ours
theirs), a temporary DATA_DIR; all removed at the end, every process stopped. The sections (d,
versus Postfix, and e, delivery, are described at their functions):

a. **processing** — N accepted submissions (2 KB messages with ``X-PM-*`` headers; SMTP-token and
   server-token ones, a few naming an unknown stream, which become SMTPApiError bounces) are
   inserted with the gateway's own ``save_submissions``, then ``enqueue_processing`` publishes them
   in tasks of 256 MessageIDs to one worker process (``-Q processing``: the delivery queue is not
   consumed, the server is Sandbox). Timed from the first publish until no submission is
   ``accepted``; once per pool (``solo``, ``threads -c 4``). Baseline in the same run: the same
   work called directly (``process_submission`` in a loop, one process, no broker).
b. **e2e** — a Live server relaying to Postfix's ``smtp-sink`` (or the Python sink), the gateway
   (``runsmtp``, one process), ``--workers`` worker processes on processing + delivery, and
   ``bench.loadgen`` sending N messages. Timed from the first accept (``received_at``) to the last
   recipient ``delivered`` (``updated_at``). Baseline: the gateway alone (workers stopped), same
   gateway, same load, right after.
c. **kill** — like (b), through a Python sink that logs every delivered transaction, with a
   periodic ``beat`` (sweep every 5 s) and the workers SIGKILLed at random moments (every 2-5 s) and
   restarted under fresh node names. Counts deliveries per MessageID at the sink (VERP MAIL FROM):
   delivered once, missing, duplicated.
f. **rss** — ``--rss-messages`` (100,000) through the gateway (one process) and one worker started
   by the Procfile's ``worker:`` line (every queue, its embedded beat) to a counting ``smtp-sink``,
   fed by ``bench.loadgen`` in chunks, the next one once the sink is at most one chunk behind (a
   bounded backlog: no message waits long enough for the sweep to queue it again, and no load
   holds more than its sessions open). The worker's RSS (VmRSS of it and its children) is sampled
   every second, VmHWM read at the end.

Exit status 1 only when a section crashed or a run never completed; a missed goal is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from bench.common import (
    CELERY,
    CpuMeter,
    Service,
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
    process_tree,
    procfile_command,
    procfile_line,
    raise_fd_limit,
    reachable,
    run_benchmark,
    scratch_dir,
    start,
    start_smtp_sink,
    step,
    throwaway_database,
)
from bench.common import django_script as script
from bench.common import start_gateway as start_runsmtp
from bench.loadgen import run_load
from bench.postfix import CountingSink, postfix_baseline, relay_through

SENDER, RECIPIENT = "app@example.com", "user@example.net"

# Goals of the issue.
GOAL_PROCESSING = 1000.0  # messages/s, one worker process
GOAL_PROCESSING_CPU_MS = 1.0  # CPU of the worker process per message
# CPU of the worker process per recipient delivered: 1 ms plus the DKIM signature (RSA 2048,
# about 0.5 ms: ``python -m bench.dkim``).
GOAL_DELIVERY_CPU_MS = 1.5
GOAL_E2E = 300.0  # messages/s, SMTP accept -> relayed, two worker processes
GOAL_VS_POSTFIX = 0.5  # end to end / Postfix, the same smtp-source load, the same sink
GOAL_AS_RUN_VS_POSTFIX = 0.3  # the same, with the worker as ``make run`` starts it
GOAL_WORKER_RSS_MB = 300.0  # the Procfile's worker, through GOAL_RSS_MESSAGES
GOAL_RSS_MESSAGES = 100_000
RSS_CHUNK = 2000  # messages per load of the rss section (fewer when the run is small)
LOAD_HEADERS = (
    "X-PM-Tag: welcome",
    "X-PM-Metadata-customer: c-1234",
    "X-PM-Metadata-order: o-98765",
    "X-PM-TrackOpens: false",
)

# --- scripts run in Django subprocesses (python -c SCRIPT JSON) --------------------------------

# A server with an SMTP token; the load's sender domain (example.com) verified, with an active DKIM
# key when cfg["dkim"] is true. It has no DNS records of ours, so the periodic re-check (a worker
# started with -B runs it, first after 5 minutes) is off for it: it would unverify the domain and
# every later message would fail the sender rule.
SETUP = """
import json, sys, django
django.setup()
from streams.services import create_server, create_smtp_token, get_stream
from domains.models import DkimKey, Domain
cfg = json.loads(sys.argv[1])
domain, _ = Domain.objects.get_or_create(
    name="example.com", defaults={"dkim_verified": True, "periodic_checks": False})
if cfg.get("dkim") and not domain.keys.filter(state="active").exists():
    DkimKey.generate(domain, state="active")
server = create_server(cfg["name"], delivery_type=cfg["delivery_type"])
token, secret = create_smtp_token(get_stream(server, "outbound"))
print(json.dumps({"server": server.id, "user": token.access_key, "password": secret}))
"""

# A Live server whose outbound stream takes mail from 127.0.0.1 without AUTH (for smtp-source, which
# cannot AUTH), and a verified sending domain for smtp-source's sender, with an active DKIM key.
SETUP_FOR_SOURCE = """
import json, sys, django
django.setup()
from domains.models import DkimKey, Domain
from streams.models import IpCredential
from streams.services import create_server, get_stream
cfg = json.loads(sys.argv[1])
server = create_server(cfg["name"], delivery_type="Live")
IpCredential.objects.create(stream=get_stream(server, "outbound"), cidr="127.0.0.1/32",
                            description="benchmark")
domain, _ = Domain.objects.get_or_create(name=cfg["domain"], defaults={"dkim_verified": True})
if not domain.keys.filter(state="active").exists():
    DkimKey.generate(domain, state="active")
print(json.dumps({"server": server.id}))
"""

# Fills ``sets`` of ``count`` accepted submissions for a new Sandbox server (their sender's domain,
# example.com, verified); writes each set's MessageIDs to ``<ids_prefix><set>.txt``. Realistic
# mix: 60 % SMTP token (stream fixed at AUTH), 38 % server token naming outbound (or nothing),
# 2 % server token naming an unknown stream.
FILL = r"""
import json, random, sys, time, uuid, django
django.setup()
from django.utils import timezone
from messages.submissions import save_submissions
from streams.services import create_server, create_smtp_token, get_stream
from domains.models import Domain
cfg = json.loads(sys.argv[1])
Domain.objects.get_or_create(name="example.com", defaults={"dkim_verified": True})
rng = random.Random(7)
server = create_server(cfg["name"])
stream = get_stream(server, "outbound")
token, _ = create_smtp_token(stream)
words = ("order shipped invoice account password reset welcome receipt team update your the "
         "and for with thanks").split()
def body(seq):
    lines, size = [], 0
    while size < 1500:
        line = " ".join(rng.choice(words) for _ in range(12))
        lines.append(line); size += len(line) + 2
    return "\r\n".join(lines)
def message(seq, kind):
    to = f"user{seq}@example.net"
    headers = [
        f"From: Example App <app@example.com>", f"To: <{to}>",
        f"Subject: Your receipt #{seq}", "Date: Mon, 02 Jun 2025 10:00:00 +0000",
        f"Message-ID: <{uuid.uuid4().hex}@app.example.com>", "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
        f"X-PM-Tag: {rng.choice(['receipt', 'welcome', 'password-reset'])}",
        f"X-PM-Metadata-customer: c-{seq % 997}", f"X-PM-Metadata-order: o-{seq}",
        "X-PM-TrackOpens: false",
    ]
    if kind == "unknown":
        headers.append("X-PM-Message-Stream: no-such-stream")
    elif kind == "server" and seq % 2:
        headers.append("X-PM-Message-Stream: outbound")
    return to, ("\r\n".join(headers) + "\r\n\r\n" + body(seq) + "\r\n").encode()
started = time.perf_counter()
seq, sizes, kinds = 0, [], {"smtp": 0, "server": 0, "unknown": 0}
for number in range(cfg["sets"]):
    ids = []
    for start in range(0, cfg["count"], 1000):
        rows = []
        for _ in range(min(1000, cfg["count"] - start)):
            seq += 1
            draw = rng.random()
            kind = "smtp" if draw < 0.60 else ("server" if draw < 0.98 else "unknown")
            kinds[kind] += 1
            to, raw = message(seq, kind)
            sizes.append(len(raw))
            message_id = uuid.uuid4()
            ids.append(str(message_id))
            rows.append(dict(
                message_id=message_id, server_id=server.id,
                stream_id=stream.id if kind == "smtp" else None,
                endpoint="transactional",
                credential_kind="smtp_token" if kind == "smtp" else "server_token",
                credential=token.access_key if kind == "smtp" else "...abcd",
                auth_mechanism="PLAIN", client_address="127.0.0.1", client_helo="app.example.com",
                tls_version="", mail_from="app@example.com", rcpt_to=[to], size=len(raw), raw=raw,
                status="accepted", received_at=timezone.now(),
            ))
        save_submissions(rows)
    with open(f"{cfg['ids_prefix']}{number}.txt", "w") as fh:
        fh.write("\n".join(ids))
print(json.dumps({"server": server.id, "seconds": round(time.perf_counter() - started, 2),
                  "mean_size": round(sum(sizes) / len(sizes)), "kinds": kinds}))
"""

PUBLISH = """
import json, sys, time, django
django.setup()
from messages.tasks import enqueue_processing
ids = open(sys.argv[1]).read().split()
started = time.time()
for start in range(0, len(ids), 256):
    enqueue_processing(ids[start : start + 256])
print(json.dumps({"started": started, "tasks": (len(ids) + 255) // 256}))
"""

# Processed, Live messages ready for delivery (one recipient each, the standard 2 KB mix from
# example.com, whose DKIM key is active: every message is signed): writes their ids to argv[2].
DELIVERY_FILL = r"""
import json, sys, uuid, django
django.setup()
from django.utils import timezone
from domains.models import DkimKey, Domain
from messages.models import OutboundMessage, Submission
from messages.processing import process_batch
from streams.services import create_server
cfg = json.loads(sys.argv[1])
domain, _ = Domain.objects.get_or_create(name="example.com", defaults={"dkim_verified": True})
if not domain.keys.filter(state="active").exists():
    DkimKey.generate(domain, state="active")
server = create_server(cfg["name"], delivery_type="Live")
body = ("Your order has shipped. Thank you for shopping with us; the receipt follows.\r\n" * 20)
rows = []
for seq in range(cfg["count"]):
    raw = (f"From: Example App <app@example.com>\r\nTo: <user{seq}@example.net>\r\n"
           f"Subject: Your receipt #{seq}\r\nMessage-ID: <{uuid.uuid4().hex}@app.example.com>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "X-PM-Tag: receipt\r\nX-PM-TrackOpens: false\r\n\r\n" + body).encode()
    rows.append(Submission(message_id=uuid.uuid4(), server=server, endpoint="transactional",
        credential_kind="server_token", client_address="127.0.0.1", mail_from="app@example.com",
        rcpt_to=[f"user{seq}@example.net"], size=len(raw), raw=raw, received_at=timezone.now()))
Submission.objects.bulk_create(rows, batch_size=1000)
pks = list(Submission.objects.filter(server=server).order_by("pk").values_list("pk", flat=True))
for start in range(0, len(pks), 500):
    process_batch(pks[start : start + 500])
messages = OutboundMessage.objects.filter(server=server).order_by("pk")
ids = list(messages.values_list("pk", flat=True))
open(sys.argv[2], "w").write(" ".join(map(str, ids)))
print(json.dumps({"server": server.id, "messages": len(ids)}))
"""

PUBLISH_DELIVERY = """
import json, sys, time, django
django.setup()
from messages.models import OutboundMessage
from delivery.tasks import enqueue_deliveries
ids = [int(i) for i in open(sys.argv[1]).read().split()]
OutboundMessage.objects.filter(pk__in=ids).update(leased_until=None)
started = time.time()
enqueue_deliveries(ids)
print(json.dumps({"started": started}))
"""

DIRECT = """
import json, sys, time, django
django.setup()
from messages.models import Submission
from messages.processing import process_submission
ids = open(sys.argv[1]).read().split()
pks = sorted(Submission.objects.filter(message_id__in=ids).values_list("pk", flat=True))
started = time.perf_counter()
statuses = [process_submission(pk) for pk in pks]
seconds = time.perf_counter() - started
print(json.dumps({"messages": len(pks), "seconds": round(seconds, 3),
                  "messages_per_second": round(len(pks) / seconds, 1)}))
"""

# An aiosmtpd sink that accepts every recipient and appends the MAIL FROM of every message it
# accepts to a file (flushed per line), so that deliveries can be counted per MessageID.
SINK = """
import signal, sys, threading
from aiosmtpd.controller import Controller
port, path = int(sys.argv[1]), sys.argv[2]
out = open(path, "a", buffering=1)
lock = threading.Lock()
class Handler:
    async def handle_DATA(self, server, session, envelope):
        with lock:
            out.write(envelope.mail_from + "\\n")
        return "250 2.0.0 Ok: queued"
controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print("sink ready", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
controller.stop()
out.close()
"""


# --- infrastructure -----------------------------------------------------------------------------


def purge(broker_url: str, *queues: str) -> None:
    """Empty queues of our virtual host (left-over tasks of an earlier section)."""
    from kombu import Connection

    with Connection(broker_url) as connection:
        channel = connection.default_channel
        for queue in queues:
            with contextlib.suppress(Exception):
                channel.queue_purge(queue)


# The tables :class:`Db` reads, by model.
TABLES = ("outbound.Submission", "outbound.OutboundMessage", "outbound.Recipient", "bounces.Bounce")


class Db:
    """Counts read straight from PostgreSQL (not through Django) while the workers run.

    ``tables`` maps each model of :data:`TABLES` to its table (:func:`bench.common.model_tables`);
    only those names, never outside input, are formatted into the SQL."""

    def __init__(self, url: str, tables: dict[str, str]):
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.submissions = tables["outbound.Submission"]
        self.bounce_table = tables["bounces.Bounce"]
        # Every recipient with its message, whose server_id the counts filter on.
        self.recipients = (
            f"{tables['outbound.Recipient']} r JOIN {tables['outbound.OutboundMessage']} m "
            "ON m.id = r.message_id"
        )

    def one(self, sql: str, *params):
        return self.conn.execute(sql, params).fetchone()

    def accepted(self, server: int) -> int:
        return self.one(
            f"SELECT count(*) FROM {self.submissions} WHERE server_id = %s "  # noqa: S608
            "AND status = 'accepted'",
            server,
        )[0]

    def statuses(self, server: int) -> dict:
        rows = self.conn.execute(
            f"SELECT status, count(*) FROM {self.submissions} WHERE server_id = %s "  # noqa: S608
            "GROUP BY 1",
            (server,),
        ).fetchall()
        return dict(rows)

    def delivered(self, server: int) -> int:
        return self.one(
            f"SELECT count(*) FROM {self.recipients} "  # noqa: S608
            "WHERE m.server_id = %s AND r.status = 'delivered'",
            server,
        )[0]

    def recipient_statuses(self, server: int) -> dict:
        rows = self.conn.execute(
            f"SELECT r.status, count(*) FROM {self.recipients} "  # noqa: S608
            "WHERE m.server_id = %s GROUP BY 1",
            (server,),
        ).fetchall()
        return dict(rows)

    def span(self, server: int) -> float:
        """Seconds from the first accept to the last delivered recipient."""
        first = self.one(
            f"SELECT min(received_at) FROM {self.submissions} WHERE server_id = %s",  # noqa: S608
            server,
        )[0]
        last = self.one(
            f"SELECT max(r.updated_at) FROM {self.recipients} "  # noqa: S608
            "WHERE m.server_id = %s AND r.status = 'delivered'",
            server,
        )[0]
        return (last - first).total_seconds()

    def bounces(self, server: int) -> int:
        sql = f"SELECT count(*) FROM {self.bounce_table} WHERE server_id = %s"  # noqa: S608
        return self.one(sql, server)[0]

    def close(self):
        self.conn.close()


class Workers:
    """Celery worker processes with fresh node names; ``kill`` SIGKILLs one and starts another."""

    def __init__(self, stack, env, work: Path, queues: str, pool: str, concurrency: int):
        self.stack, self.env, self.work = stack, env, work
        self.queues, self.pool, self.concurrency = queues, pool, concurrency
        self.running: list[Service] = []
        self.started = 0
        self.lock = threading.Lock()

    def start(self, wait: bool = True) -> Service:
        self.started += 1
        args = [*CELERY, "worker", "-l", "info", "-Q", self.queues, "--pool", self.pool, "-n",
                f"bench-{self.started}-{time.monotonic_ns()}@%h",
                "--without-mingle", "--without-gossip"]  # fmt: skip
        if self.pool != "solo":
            args += ["--concurrency", str(self.concurrency)]
        service = start(self.stack, f"worker-{self.started}", args, self.env, self.work)
        with self.lock:
            self.running.append(service)
        if wait:
            service.wait_for(" ready.", timeout=90)
        return service

    def kill(self, rng: random.Random) -> None:
        with self.lock:
            victim = rng.choice(self.running)
            self.running.remove(victim)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        self.start()

    def stop(self) -> None:
        with self.lock:
            running, self.running = self.running, []
        for service in running:
            service.stop()


def wait_until(predicate, timeout: float, interval: float = 0.05, stall: float | None = None,
               progress=None) -> bool:  # fmt: skip
    """Poll ``predicate`` until true; False after ``timeout`` (or ``stall`` s without progress)."""
    deadline = time.monotonic() + timeout
    last_value, last_change = None, time.monotonic()
    while time.monotonic() < deadline:
        if predicate():
            return True
        if progress is not None and stall is not None:
            value = progress()
            if value != last_value:
                last_value, last_change = value, time.monotonic()
            elif time.monotonic() - last_change > stall:
                return False
        time.sleep(interval)
    return False


# --- sections -------------------------------------------------------------------------------------


def processing(cfg, stack, env, broker, db, work: Path) -> dict:
    """(a) One worker process against N pre-filled submissions, per pool; plus the direct call."""
    pools = [("solo", 1), ("threads", 4)]
    step(f"processing: filling {len(pools) + 1} x {cfg.messages:,} accepted submissions")
    fill = script(
        env, FILL,
        json.dumps({"name": "bench-processing", "sets": len(pools) + 1, "count": cfg.messages,
                    "ids_prefix": str(work / "ids-")}),
    )  # fmt: skip
    server = fill["server"]
    result = {"fill": fill, "runs": {}}
    for number, (pool, concurrency) in enumerate(pools):
        label = pool if pool == "solo" else f"{pool} -c {concurrency}"
        step(f"processing: one worker, --pool {label}")
        workers = Workers(stack, env, work, "processing", pool, concurrency)
        service = workers.start()
        cpu_before = cpu_seconds(service.proc.pid)
        try:
            before = db.accepted(server)
            published = script(env, PUBLISH, str(work / f"ids-{number}.txt"))
            target = before - cfg.messages
            done = wait_until(
                lambda t=target: db.accepted(server) <= t, timeout=cfg.timeout, stall=60,
                progress=lambda: db.accepted(server),
            )  # fmt: skip
            finished = time.time()
            cpu = cpu_seconds(service.proc.pid) - cpu_before
        finally:
            workers.stop()
        seconds = finished - published["started"]
        left = max(db.accepted(server) - target, 0)
        result["runs"][label] = {
            "messages": cfg.messages,
            "completed": done,
            "left_unprocessed": left,
            "tasks": published["tasks"],
            "seconds": round(seconds, 3),
            "messages_per_second": round((cfg.messages - left) / seconds, 1),
            # The worker process's CPU (every thread), idle polling included.
            "cpu_ms_per_message": round(cpu * 1000 / max(cfg.messages - left, 1), 3),
        }
        step(f"  {result['runs'][label]['messages_per_second']} messages/s")
    step("processing: baseline, process_submission called directly (no broker)")
    result["direct"] = script(env, DIRECT, str(work / f"ids-{len(pools)}.txt"))
    result["statuses"] = db.statuses(server)
    result["bounces"] = db.bounces(server)
    result["best"] = max(result["runs"], key=lambda k: result["runs"][k]["messages_per_second"])
    best = result["runs"][result["best"]]["messages_per_second"]
    direct = result["direct"]["messages_per_second"]
    result["ratio_to_direct"] = round(best / direct, 3) if direct else 0.0
    purge(broker, "processing", "delivery")
    return result


def start_sink(stack, kind: str, work: Path, log_name: str):
    """Start a sink; returns (port, path of the delivery log or None)."""
    port = free_port()
    if kind == "smtp-sink":
        tool = find_tool("smtp-sink")
        if tool:
            start_smtp_sink(stack, tool, port, work)
            return port, None, "Postfix smtp-sink"
    path = work / f"{log_name}.txt"
    service = start(stack, log_name, [sys.executable, "-c", SINK, str(port), str(path)],
                    dict(os.environ), work)  # fmt: skip
    service.wait_for("sink ready", timeout=30)
    return port, path, "aiosmtpd sink (logs MAIL FROM)"


def start_gateway(stack, env, work: Path, name: str, pids: list | None = None) -> int:
    """A one-process gateway on a free port; returns the port (its pid goes into ``pids``)."""
    port = free_port()
    _, serving = start_runsmtp(stack, env, port, 1, work, name)
    if pids is not None:
        pids.extend(serving)
    return port


def load(port: int, creds: dict, messages: int, concurrency: int, ids_file=None) -> dict:
    return run_load(
        processes=1, host="127.0.0.1", port=port, user=creds["user"],
        password=creds["password"], concurrency=concurrency, messages=messages, size=1600,
        per_connection=1, headers=LOAD_HEADERS, sender=SENDER, to=RECIPIENT, ids_file=ids_file,
    )  # fmt: skip


def relay_env(env: dict, port: int, **extra) -> dict:
    return {
        **env,
        "OUTBOUND_SMTP_RELAY": f"smtp://127.0.0.1:{port}?starttls=never",
        **{k: str(v) for k, v in extra.items()},
    }


def end_to_end(cfg, stack, env, broker, db, work: Path) -> dict:
    """(b) loadgen -> gateway -> workers (processing + delivery) -> sink; then the gateway alone."""
    purge(broker, "processing", "delivery")
    creds = script(env, SETUP, json.dumps({"name": "bench-e2e", "delivery_type": "Live"}))
    server = creds["server"]
    sink_port, _, sink_label = start_sink(stack, cfg.sink, work, "sink-e2e")
    wenv = relay_env(env, sink_port)
    gateway_port = start_gateway(stack, wenv, work, "gateway-e2e")
    step(f"e2e: {cfg.workers} worker(s) --pool {cfg.pool}, sink: {sink_label}")
    workers = Workers(stack, wenv, work, "processing,delivery", cfg.pool, cfg.concurrency)
    for _ in range(cfg.workers):
        workers.start()
    try:
        step(f"e2e: loadgen sends {cfg.messages:,} messages")
        accept = load(gateway_port, creds, cfg.messages, cfg.load_concurrency)
        done = wait_until(
            lambda: db.delivered(server) >= accept["messages_ok"], timeout=cfg.timeout,
            interval=0.25, stall=60, progress=lambda: db.delivered(server),
        )  # fmt: skip
    finally:
        workers.stop()
    delivered = db.delivered(server)
    span = db.span(server) if delivered else 0.0
    step("e2e baseline: the same gateway with the workers stopped")
    alone = load(gateway_port, creds, cfg.messages, cfg.load_concurrency)
    purge(broker, "processing", "delivery")
    e2e_rate = round(delivered / span, 1) if span else 0.0
    return {
        "sink": sink_label,
        "workers": cfg.workers,
        "pool": cfg.pool if cfg.pool == "solo" else f"{cfg.pool} -c {cfg.concurrency}",
        "messages": cfg.messages,
        "accepted": accept["messages_ok"],
        "delivered": delivered,
        "completed": done,
        "recipient_statuses": db.recipient_statuses(server),
        "seconds": round(span, 3),
        "messages_per_second": e2e_rate,
        "accept_with_workers": _accept_figures(accept),
        "gateway_alone": _accept_figures(alone),
        "ratio_to_gateway_alone": round(e2e_rate / alone["messages_per_second"], 3)
        if alone["messages_per_second"]
        else 0.0,
    }


def delivery(cfg, stack, env, broker, db, work: Path) -> dict:
    """(e) One worker process on the delivery queue relays N processed messages (one recipient
    each, DKIM-signed) to a counting smtp-sink; CPU of the worker process per recipient."""
    step(f"delivery: {cfg.messages:,} processed Live messages")
    ids_path = work / "delivery-ids.txt"
    fill = script(env, DELIVERY_FILL, json.dumps({"name": "bench-delivery", "count": cfg.messages}),
                  str(ids_path))  # fmt: skip
    sink = CountingSink(stack, work, "smtp-sink-delivery")
    workers = Workers(stack, relay_env(env, sink.port), work, "delivery", "threads",
                      cfg.concurrency)  # fmt: skip
    service = workers.start()
    cpu_before = cpu_seconds(service.proc.pid)
    try:
        published = script(env, PUBLISH_DELIVERY, str(ids_path))
        done = sink.wait_for(fill["messages"], timeout=cfg.timeout)
        finished = time.monotonic() if done else None
        cpu = cpu_seconds(service.proc.pid) - cpu_before
        wall_end = time.time()
    finally:
        workers.stop()
    counted = sink.count()
    seconds = wall_end - published["started"]
    return {
        "messages": fill["messages"],
        "counted_at_sink": counted,
        "completed": finished is not None and db.delivered(fill["server"]) == fill["messages"],
        "seconds": round(seconds, 3),
        "messages_per_second": round(counted / seconds, 1) if seconds else 0.0,
        "cpu_ms_per_recipient": round(cpu * 1000 / max(counted, 1), 3),
        "pool": f"threads -c {cfg.concurrency}",
    }


def scaled_workers(cfg) -> list[tuple[str, int, str, int]]:
    """The worker groups of the scaled run: (queues, processes, pool, concurrency) each;
    ``--split`` gives processing and delivery processes of their own."""
    if cfg.split:
        return [("processing", 1, cfg.pool, cfg.concurrency),
                ("delivery", cfg.workers - 1 or 1, cfg.pool, cfg.concurrency)]  # fmt: skip
    return [("processing,delivery", cfg.workers, cfg.pool, cfg.concurrency)]


def versus_postfix(cfg, stack, env, broker, db, work: Path) -> dict:
    """(d) Postfix relaying the smtp-source load to a counting smtp-sink, then the same load
    through the gateway and the workers to the same kind of sink: twice, with ``--workers``
    worker processes (processing + delivery) and with one worker as ``make run`` starts it."""
    load = SimpleNamespace(
        messages=cfg.postfix_messages, load_concurrency=cfg.load_concurrency, size=2048,
        sender=SENDER, to=RECIPIENT, timeout=cfg.timeout,
    )  # fmt: skip
    result = {"messages": load.messages, "postfix": postfix_baseline(load, stack, work)}
    step(f"  Postfix: {result['postfix']['messages_per_second']} messages/s")
    script(env, SETUP_FOR_SOURCE, json.dumps({"name": "bench-source",
                                              "domain": SENDER.rpartition("@")[2]}))  # fmt: skip
    runs = {"scaled": scaled_workers(cfg), "as make run": []}  # the latter: the Procfile's line
    for label, groups in runs.items():
        purge(broker, "celery", "processing", "delivery", "webhooks")
        with contextlib.ExitStack() as run_stack:
            sink = CountingSink(run_stack, work, f"smtp-sink-{label.replace(' ', '-')}")
            wenv = relay_env(env, sink.port)
            gateway_pids: list[int] = []
            gateway_port = start_gateway(run_stack, wenv, work, f"gateway-{label[:6]}",
                                         gateway_pids)  # fmt: skip
            roles, started = {"gateway": gateway_pids}, []
            for queues, count, pool, concurrency in groups:
                workers = Workers(run_stack, wenv, work, queues, pool, concurrency)
                started.append(workers)
                roles[f"workers {queues}"] = [workers.start().proc.pid for _ in range(count)]
            if not groups:
                worker = start(run_stack, "worker-as-run", procfile_command("worker"), wenv, work)
                worker.wait_for(" ready.", timeout=90)
                roles["worker"] = process_tree(worker.proc.pid)  # with -B's beat
            run = relay_through(gateway_port, sink, load, f"pipeline ({label})", CpuMeter(roles))
            for workers in started:
                workers.stop()
        postfix_rate = result["postfix"]["messages_per_second"]
        run["workers"] = (
            " + ".join(
                f"{count} x -Q {queues} --pool {pool}" + (f" -c {c}" if pool != "solo" else "")
                for queues, count, pool, c in groups
            )
            or "the Procfile's worker line"
        )
        run["ratio_to_postfix"] = (
            round(run["messages_per_second"] / postfix_rate, 3) if postfix_rate else 0.0
        )
        result[label] = run
        step(f"  {label}: {run['messages_per_second']} messages/s ({run['ratio_to_postfix']}x)")
    return result


def _accept_figures(result: dict) -> dict:
    keep = ("messages_ok", "messages_failed", "seconds", "messages_per_second", "p50_ms", "p99_ms")
    return {k: result[k] for k in keep} | {"errors": result["errors"]}


def kill_run(cfg, stack, env, broker, db, work: Path) -> dict:
    """(c) Like e2e, with workers SIGKILLed at random moments; count deliveries at the sink."""
    purge(broker, "processing", "delivery", "celery")
    creds = script(env, SETUP, json.dumps({"name": "bench-kill", "delivery_type": "Live"}))
    server = creds["server"]
    sink_port, sink_log, sink_label = start_sink(stack, "python", work, "sink-kill")
    # A recipient left 'sending' by a killed worker is sent again 4 x OUTBOUND_TIMEOUT later;
    # a lost task is found by the sweep (beat) after SWEEP_AFTER_SECONDS. Not shorter than the
    # default 60 s: the sweep cannot tell a lost task from one still waiting in a backlog, and
    # re-queues every pending message each time (10 s gave ~940,000 queued deliver tasks).
    sweep_after = 15 if cfg.quick else 60
    wenv = relay_env(env, sink_port, OUTBOUND_TIMEOUT=2, SWEEP_AFTER_SECONDS=sweep_after,
                     SWEEP_INTERVAL_SECONDS=sweep_after / 2)  # fmt: skip
    gateway_port = start_gateway(stack, wenv, work, "gateway-kill")
    beat = start(stack, "beat", [*CELERY, "beat", "-l", "info"], wenv, work)
    workers = Workers(stack, wenv, work, "processing,delivery,celery", cfg.pool, cfg.concurrency)
    for _ in range(cfg.workers):
        workers.start()
    rng = random.Random(os.getpid())
    kills: list[float] = []
    stop = threading.Event()
    errors: list[str] = []

    def killer():
        try:
            while not stop.wait(rng.uniform(*cfg.kill_every)):
                workers.kill(rng)
                kills.append(time.monotonic())
        except Exception as exc:  # reported, not lost in a thread
            errors.append(repr(exc))

    ids_file = str(work / "kill-ids.txt")
    thread = threading.Thread(target=killer, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        step(f"kill run: {cfg.kill_messages:,} messages, a worker SIGKILLed every "
             f"{cfg.kill_every[0]:g}-{cfg.kill_every[1]:g} s")  # fmt: skip
        accept = load(gateway_port, creds, cfg.kill_messages, cfg.load_concurrency, ids_file)
        done = wait_until(
            lambda: db.delivered(server) >= accept["messages_ok"], timeout=cfg.timeout,
            interval=0.5, stall=120, progress=lambda: db.delivered(server),
        )  # fmt: skip
        stop.set()
        thread.join()
        # Let in-doubt re-sends (4 x OUTBOUND_TIMEOUT) and the sweep show up before counting.
        time.sleep(8 if not cfg.quick else 3)
    finally:
        stop.set()
        workers.stop()
        beat.stop()
    seconds = time.monotonic() - started
    acknowledged = set(Path(ids_file).read_text().split()) if os.path.exists(ids_file) else set()
    sent = Counter()
    verp = re.compile(r"pm_bounces\+([0-9a-f-]{36})(?:\.[0-9a-f]+)?@", re.I)
    for line in sink_log.read_text().splitlines() if sink_log.exists() else []:
        match = verp.search(line)
        if match:
            sent[match.group(1).lower()] += 1
    once = sum(1 for i in acknowledged if sent.get(i) == 1)
    missing = sum(1 for i in acknowledged if i not in sent)
    duplicated = sum(1 for i in acknowledged if sent.get(i, 0) > 1)
    extra_copies = sum(sent[i] - 1 for i in acknowledged if sent.get(i, 0) > 1)
    # The at-least-once window: a killed worker can leave at most one SMTP transaction per
    # connection unrecorded (a thread holds one connection; a message here has one recipient).
    window = len(kills) * cfg.concurrency
    return {
        "messages": cfg.kill_messages,
        "accepted": accept["messages_ok"],
        "accept_failures": accept["messages_failed"],
        "kills": len(kills),
        "worker_starts": workers.started,
        "killer_errors": errors,
        "completed": done,
        "recipient_statuses": db.recipient_statuses(server),
        "submission_statuses": db.statuses(server),
        "sink_transactions": sum(sent.values()),
        "delivered_once": once,
        "missing": missing,
        "duplicated": duplicated,
        "extra_copies": extra_copies,
        "unknown_at_sink": sum(1 for i in sent if i not in acknowledged),
        "seconds": round(seconds, 1),
        "exactly_once": bool(acknowledged) and once == len(acknowledged),
        "window": window,
        "lossless_within_window": bool(acknowledged) and missing == 0 and extra_copies <= window,
    }


class RssSampler(threading.Thread):
    """VmRSS of a process and its descendants, once a second until ``stop()``."""

    def __init__(self, pid: int, interval: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.started_at = time.monotonic()
        self.samples: list[tuple[float, float]] = []  # (seconds, total MB)
        self.first: dict[int, float] = {}
        self.peak: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.halt = threading.Event()

    def sample(self) -> float:
        figures = {}
        for pid in process_tree(self.pid):
            with contextlib.suppress(OSError):  # a process that just ended
                figures[pid] = proc_status_mb(pid)
        for pid, mb in figures.items():
            self.first.setdefault(pid, mb)
            self.peak[pid] = max(self.peak.get(pid, 0.0), mb)
        self.last = figures
        total = round(sum(figures.values()), 1)
        self.samples.append((round(time.monotonic() - self.started_at, 1), total))
        return total

    def run(self):
        while not self.halt.wait(0 if not self.samples else self.interval):
            self.sample()

    def stop(self) -> None:
        self.halt.set()
        self.join()
        self.sample()

    def high_water(self) -> dict[int, float]:
        """VmHWM (the peak RSS since each process started) of the processes alive now."""
        figures = {}
        for pid in process_tree(self.pid):
            with contextlib.suppress(OSError):
                figures[pid] = proc_status_mb(pid, "VmHWM")
        return figures


def worker_rss(cfg, stack, env, broker, db, work: Path) -> dict:
    """(f) ``--rss-messages`` through the gateway and the Procfile's worker to a counting
    smtp-sink, in chunks; the worker's RSS (and its children's) sampled every second."""
    purge(broker, "celery", "processing", "delivery", "webhooks")
    setup = {"name": "bench-rss", "delivery_type": "Live", "dkim": True}
    creds = script(env, SETUP, json.dumps(setup))
    server, total = creds["server"], cfg.rss_messages
    chunk = min(RSS_CHUNK, max(100, total // 5))
    sink = CountingSink(stack, work, "smtp-sink-rss")
    wenv = relay_env(env, sink.port)
    gateway_port = free_port()
    _, gateway_pids = start_runsmtp(stack, wenv, gateway_port, 1, work, "gateway-rss")
    args = procfile_command("worker")
    worker = start(stack, "worker-rss", args, wenv, work)
    worker.wait_for(" ready.", timeout=90)
    sampler = RssSampler(worker.proc.pid)
    sampler.start()
    step(f"rss: {total:,} messages in chunks of {chunk:,} through `{procfile_line('worker')}`")
    sent = accepted = failed = 0
    started = time.monotonic()
    done = True
    try:
        while sent < total and done:
            count = min(chunk, total - sent)
            accept = load(gateway_port, creds, count, cfg.load_concurrency)
            sent, accepted = sent + count, accepted + accept["messages_ok"]
            failed += accept["messages_failed"]
            # The next chunk once the sink is at most one chunk behind (the last: all of them).
            behind = 0 if sent >= total else chunk
            done = sink.wait_for(accepted - behind, timeout=cfg.timeout, stall=120) is not None
            if sent % (10 * chunk) < chunk or sent >= total:
                step(f"  {sink.count():,} counted of {sent:,} sent; worker and children "
                     f"{sampler.samples[-1][1] if sampler.samples else 0:.0f} MB")  # fmt: skip
        seconds = time.monotonic() - started
        sampler.stop()
        high_water = sampler.high_water()
    finally:
        sampler.halt.set()
        worker.stop()
    counted = sink.count()
    delivered = db.delivered(server)
    gateway_pid = gateway_pids[0]
    peaks = sampler.peak
    return {
        "messages": total,
        "chunk": chunk,
        "worker_command": procfile_line("worker"),
        "accepted": accepted,
        "accept_failures": failed,
        "counted_at_sink": counted,
        "delivered": delivered,
        "completed": done and accepted == total and counted >= total and delivered == total,
        "seconds": round(seconds, 1),
        "messages_per_second": round(counted / seconds, 1) if seconds else 0.0,
        "worker_pid": worker.proc.pid,
        "processes": len(peaks),
        # Sums over the worker and its children (VmRSS, MB).
        "first_mb": round(sampler.samples[0][1], 1),
        "peak_mb": max(total_mb for _, total_mb in sampler.samples),
        "final_mb": sampler.samples[-1][1],
        "high_water_mb": round(sum(high_water.values()), 1),
        "by_process": {
            pid: {
                "first_mb": sampler.first[pid],
                "peak_mb": peaks[pid],
                "final_mb": sampler.last.get(pid),
                "high_water_mb": high_water.get(pid),
            }
            for pid in peaks
        },
        "gateway_mb": {
            "final": proc_status_mb(gateway_pid),
            "high_water": proc_status_mb(gateway_pid, "VmHWM"),
        },
        "samples": sampler.samples,
    }


# --- report ---------------------------------------------------------------------------------------


def goals(result: dict) -> list[dict]:
    entries = []
    if "processing" in result:
        p = result["processing"]
        best = p["runs"][p["best"]]
        entries.append({
            "goal": f"processing >= {GOAL_PROCESSING:.0f} messages/s with one worker process",
            "passed": best["messages_per_second"] >= GOAL_PROCESSING and best["completed"],
            "measured": f"{best['messages_per_second']:.0f}/s ({p['best']}); direct call "
                        f"{p['direct']['messages_per_second']:.0f}/s",
            "note": "" if best["completed"] else "did not complete",
        })  # fmt: skip
        entries.append({
            "goal": f"processing <= {GOAL_PROCESSING_CPU_MS:g} ms of CPU per message "
                    "(worker process)",
            "passed": best["cpu_ms_per_message"] <= GOAL_PROCESSING_CPU_MS and best["completed"],
            "measured": f"{best['cpu_ms_per_message']:.2f} ms ({p['best']})",
            "note": "",
        })  # fmt: skip
    if "e2e" in result:
        e = result["e2e"]
        entries.append({
            "goal": f"end to end (SMTP accept -> relayed) >= {GOAL_E2E:.0f} messages/s, "
                    "two worker processes",
            "passed": e["messages_per_second"] >= GOAL_E2E and e["completed"],
            "measured": f"{e['messages_per_second']:.0f}/s; gateway alone "
                        f"{e['gateway_alone']['messages_per_second']:.0f}/s",
            "note": "" if e["workers"] == 2 else f"{e['workers']} worker(s)",
        })  # fmt: skip
    if "delivery" in result:
        d = result["delivery"]
        entries.append({
            "goal": f"delivery <= {GOAL_DELIVERY_CPU_MS:g} ms of CPU per recipient, DKIM-signed "
                    "(worker process)",
            "passed": d["completed"] and d["cpu_ms_per_recipient"] <= GOAL_DELIVERY_CPU_MS,
            "measured": f"{d['cpu_ms_per_recipient']:.2f} ms; {d['messages_per_second']:.0f} "
                        f"recipients/s ({d['pool']})",
            "note": "" if d["completed"] else f"{d['counted_at_sink']} counted",
        })  # fmt: skip
    if "postfix" in result:
        p = result["postfix"]
        for label, goal in (("scaled", GOAL_VS_POSTFIX), ("as make run", GOAL_AS_RUN_VS_POSTFIX)):
            run = p[label]
            entries.append({
                "goal": f"versus Postfix: end to end ({label}: {run['workers']}) >= {goal}x "
                        "Postfix, the same smtp-source load, counted at smtp-sink",
                "passed": run["completed"] and run["ratio_to_postfix"] >= goal,
                "measured": f"{run['messages_per_second']:.0f}/s vs Postfix "
                            f"{p['postfix']['messages_per_second']:.0f}/s: "
                            f"{run['ratio_to_postfix']:.2f}x",
                "note": "" if run["completed"] else f"{run['counted_at_sink']} counted",
            })  # fmt: skip
    if "kill" in result:
        k = result["kill"]
        entries.append({
            "goal": "run with random worker kills: none lost, duplicates only in the "
                    "at-least-once window (one transaction per connection open at a kill)",
            "passed": k["lossless_within_window"],
            "measured": f"{k['delivered_once']:,}/{k['accepted']:,} once, {k['missing']} "
                        f"missing, {k['extra_copies']} extra copies (window: "
                        f"{k['window']}), {k['kills']} kills",
            "note": "" if k["messages"] >= 10_000 else f"{k['messages']:,} messages, not 10,000",
        })  # fmt: skip
    if "rss" in result:
        r = result["rss"]
        # The larger of the sampled peak and the sum of VmHWM: a spike between two samples counts.
        peak = max(r["peak_mb"], r["high_water_mb"])
        note = [] if r["completed"] else [f"{r['counted_at_sink']:,} counted"]
        if r["messages"] < GOAL_RSS_MESSAGES:
            note.append(f"{r['messages']:,} messages, not {GOAL_RSS_MESSAGES:,}")
        entries.append({
            "goal": f"worker RSS < {GOAL_WORKER_RSS_MB:.0f} MB through a "
                    f"{GOAL_RSS_MESSAGES:,}-message run",
            "passed": r["completed"] and r["messages"] >= GOAL_RSS_MESSAGES
                      and peak < GOAL_WORKER_RSS_MB,
            "measured": f"peak {peak:.0f} MB, final {r['final_mb']:.0f} MB (first "
                        f"{r['first_mb']:.0f} MB); {r['counted_at_sink']:,}/{r['messages']:,} "
                        "delivered",
            "note": "; ".join(note),
        })  # fmt: skip
    return entries


def _cpu_lines(run: dict) -> list[str]:
    cpu = run.get("cpu_ms_per_message") or {}
    if not cpu:
        return []
    roles = ", ".join(f"{k} {v}" for k, v in cpu.items() if k != "machine busy %")
    return [f"    CPU ms per message: {roles}; machine busy {cpu['machine busy %']} %"]


def report(result: dict) -> str:
    cfg = result["config"]
    lines = [f"Processing and delivery benchmark ({cfg['messages']:,} messages per run, "
             "PostgreSQL, RabbitMQ)"]  # fmt: skip
    if "processing" in result:
        p = result["processing"]
        fill = p["fill"]
        lines += [
            "",
            f"(a) processing, one worker process, -Q processing (mean message "
            f"{fill['mean_size']:,} bytes; mix {fill['kinds']})",
            f"  {'run':<40}{'msg/s':>9}{'seconds':>9}{'CPU ms/msg':>12}",
        ]
        for label, run in p["runs"].items():
            lines.append(f"  {'worker --pool ' + label:<40}{run['messages_per_second']:>9.1f}"
                         f"{run['seconds']:>9.2f}{run['cpu_ms_per_message']:>12.3f}")  # fmt: skip
        d = p["direct"]
        lines.append(f"  {'baseline: process_submission, no broker':<40}"
                     f"{d['messages_per_second']:>9.1f}{d['seconds']:>9.2f}")  # fmt: skip
        lines.append(f"  {'best worker / direct':<40}{p['ratio_to_direct']:>8.2f}x")
        lines.append(f"  submissions: {p['statuses']}; SMTPApiError bounces: {p['bounces']}")
    if "e2e" in result:
        e = result["e2e"]
        lines += [
            "",
            f"(b) end to end: loadgen -> gateway (1 process) -> {e['workers']} worker(s) "
            f"(--pool {e['pool']}) -> {e['sink']}",
            f"  delivered {e['delivered']:,}/{e['accepted']:,} in {e['seconds']:.2f} s "
            f"(first accept -> last delivered): {e['messages_per_second']:.1f} msg/s",
            f"  gateway accept rate during the run: "
            f"{e['accept_with_workers']['messages_per_second']:.1f} msg/s; "
            f"gateway alone (workers stopped): {e['gateway_alone']['messages_per_second']:.1f}"
            f" msg/s; end to end / gateway alone: {e['ratio_to_gateway_alone']:.2f}x",
        ]
    if "kill" in result:
        k = result["kill"]
        lines += [
            "",
            f"(c) kill run: {k['accepted']:,} accepted, {k['kills']} SIGKILLs in {k['seconds']} s;"
            f" at the sink: {k['delivered_once']:,} once, {k['missing']} missing, "
            f"{k['duplicated']} duplicated ({k['extra_copies']} extra copies)",
            f"  recipients: {k['recipient_statuses']}",
        ]
    if "postfix" in result:
        p = result["postfix"]
        lines += ["", f"(d) versus Postfix: smtp-source -s {result['config']['load_concurrency']} "
                      f"-m {p['messages']:,} -l 2048, counted at smtp-sink "
                      "(first message sent -> last counted)",
                  f"  {'Postfix (private instance, relayhost smtp-sink)':<52}"
                  f"{p['postfix']['messages_per_second']:>9.1f} msg/s"]  # fmt: skip
        lines += _cpu_lines(p["postfix"])
        for label in ("scaled", "as make run"):
            run = p[label]
            lines.append(f"  {'pipeline, ' + label + ': ' + run['workers']:<52}"
                         f"{run['messages_per_second']:>9.1f} msg/s  "
                         f"{run['ratio_to_postfix']:.2f}x")  # fmt: skip
            lines += _cpu_lines(run)
    if "delivery" in result:
        d = result["delivery"]
        lines += ["", f"(e) delivery, one worker process (-Q delivery, --pool {d['pool']}) -> "
                      "smtp-sink, every message DKIM-signed",
                  f"  {d['counted_at_sink']:,}/{d['messages']:,} counted in {d['seconds']:.2f} s:"
                  f" {d['messages_per_second']:.1f} recipients/s, "
                  f"{d['cpu_ms_per_recipient']:.3f} ms CPU per recipient"]  # fmt: skip
    if "rss" in result:
        lines += rss_report(result["rss"])
    lines += ["", *goal_lines(result["goals"])]
    return "\n".join(lines)


def rss_report(r: dict) -> list[str]:
    """(f): the worker's memory through the long run, summed over it and its children."""
    lines = [
        "",
        f"(f) worker RSS: {r['messages']:,} messages, loadgen -> gateway (1 process) -> "
        f"`{r['worker_command']}` -> smtp-sink, in chunks of {r['chunk']:,}",
        f"  {r['counted_at_sink']:,} counted at the sink, {r['delivered']:,} delivered, in "
        f"{r['seconds']:.0f} s ({r['messages_per_second']:.1f} msg/s); "
        f"{r['accept_failures']} accept failures",
        f"  {'VmRSS, MB':<40}{'first':>9}{'peak':>9}{'final':>9}{'VmHWM':>9}",
        f"  {'worker and children (sum)':<40}{r['first_mb']:>9.1f}{r['peak_mb']:>9.1f}"
        f"{r['final_mb']:>9.1f}{r['high_water_mb']:>9.1f}",
    ]
    for pid, p in r["by_process"].items():
        label = f"pid {pid}" + (" (worker)" if int(pid) == r["worker_pid"] else " (child)")
        final = "-" if p["final_mb"] is None else f"{p['final_mb']:.1f}"
        hwm = "-" if p["high_water_mb"] is None else f"{p['high_water_mb']:.1f}"
        lines.append(f"  {label:<40}{p['first_mb']:>9.1f}{p['peak_mb']:>9.1f}{final:>9}{hwm:>9}")
    gateway = r["gateway_mb"]
    lines.append(
        f"  gateway at the end: {gateway['final']:.1f} MB, VmHWM {gateway['high_water']:.1f} MB"
    )
    return lines


# --- orchestration --------------------------------------------------------------------------------


def run(cfg, stack: contextlib.ExitStack) -> dict:
    work = scratch_dir(stack, "pipelinebench-")
    raise_fd_limit()
    name = f"bench_{os.getpid()}"
    result = {"config": {k: v for k, v in vars(cfg).items()}}
    step(f"preparing PostgreSQL template database {name} (migrate)")
    env = gateway_env(throwaway_database(stack, name), work / "data")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    tables = model_tables(env, *TABLES)
    sections = {"processing": processing, "delivery": delivery, "e2e": end_to_end,
                "postfix": versus_postfix, "kill": kill_run, "rss": worker_rss}  # fmt: skip
    result["errors"] = {}
    for section, function in sections.items():
        if section not in cfg.only:
            continue
        # Each section has a database (a copy of the migrated template) and a RabbitMQ virtual
        # host of its own: nothing left over by one section (queued tasks, submissions the sweep
        # would find) can reach the next.
        with contextlib.ExitStack() as section_stack:
            try:
                own = f"{name}_{section}"
                database_url = throwaway_database(section_stack, own, template=name)
                broker = prepare_vhost(section_stack, own)
                section_env = {**env, "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker}
                db = Db(database_url, tables)
                section_stack.callback(db.close)
                result[section] = function(cfg, section_stack, section_env, broker, db, work)
            except Exception as exc:
                result["errors"][section] = f"{type(exc).__name__}: {exc}"[-3000:]
                step(f"{section} failed: {result['errors'][section]}")
    result["goals"] = goals(result)
    return result


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser("bench.pipeline", __doc__)
    add = parser.add_argument
    add("--messages", type=int, help="messages per processing / e2e run (default 10000; quick 300)")
    add("--workers", type=int, default=2, help="worker processes for e2e and kill (default 2)")
    add("--pool", default="threads", choices=["threads", "solo", "prefork"],
        help="pool of the e2e / kill workers (default threads)")  # fmt: skip
    add("--concurrency", type=int, default=4, help="threads per e2e / kill worker (default 4)")
    add("--split", action=argparse.BooleanOptionalAction, default=True,
        help="versus Postfix, scaled: one processing worker and the rest delivery (default), "
             "or every worker on both queues")  # fmt: skip
    add("--load-concurrency", type=int, default=20, help="loadgen sessions (default 20)")
    add("--sink", default="smtp-sink", choices=["smtp-sink", "python"], help="e2e relay sink")
    add("--kill-run", dest="kill_messages", type=int,
        help="messages of the kill run (default 10000; quick 200)")  # fmt: skip
    add("--postfix-messages", type=int,
        help="messages of the runs against Postfix (default 3000; quick 300)")  # fmt: skip
    add("--rss-messages", type=int,
        help="messages of the worker RSS run (default 100000; quick 500)")  # fmt: skip
    add("--only", default="processing,delivery,e2e,postfix,kill,rss",
        help="sections, comma separated")  # fmt: skip
    add("--timeout", type=float, default=900.0, help="seconds a run may take")
    cfg = parser.parse_args(argv)
    if cfg.messages is None:
        cfg.messages = 300 if cfg.quick else 10_000
    if cfg.postfix_messages is None:
        cfg.postfix_messages = 300 if cfg.quick else 3_000
    if cfg.kill_messages is None:
        cfg.kill_messages = 200 if cfg.quick else 10_000
    if cfg.rss_messages is None:
        cfg.rss_messages = 500 if cfg.quick else GOAL_RSS_MESSAGES
    cfg.kill_every = (1.0, 2.0) if cfg.quick else (2.0, 5.0)
    cfg.only = [s.strip() for s in cfg.only.split(",") if s.strip()]
    if cfg.quick:
        cfg.timeout = min(cfg.timeout, 120.0)
    return cfg


def main(argv=None) -> int:
    cfg = parse_args(argv)
    if not reachable("127.0.0.1", 5432) or not reachable("127.0.0.1", 5672):
        print("PostgreSQL (5432) and RabbitMQ (5672) must answer on 127.0.0.1", file=sys.stderr)
        return 2
    result = run_benchmark(cfg, run, report)
    incomplete = [
        name for name in ("processing", "e2e", "kill", "rss") if name in result
        and not (all(r["completed"] for r in result[name]["runs"].values())
                 if name == "processing" else result[name]["completed"])
    ]  # fmt: skip
    if result["errors"] or incomplete:
        print(f"crashed: {sorted(result['errors'])}, incomplete: {incomplete}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
