"""Inbound mail: accept-to-webhook throughput of the inbound MX, and parse CPU per message.

    python -m bench.inbound [--messages 2000] [--concurrency 8] [--database sqlite|postgres]
                            [--quick] [--json PATH]

Throughput: a server whose InboundHookUrl is a fast local receiver (200 to every POST); the real
gateway (``runsmtp`` with an ``inbound`` listener only) and the Procfile's worker, on the embedded
default (SQLite and the filesystem queue) or on PostgreSQL and a RabbitMQ virtual host of its own;
N messages (a reply with a text part, an HTML part and a 4 KB attachment) sent over C kept-open
SMTP connections to the server's inbound address. Measured from the first MAIL to the last POST
received, and against the same sends to a bare aiosmtpd sink (``bench.sink``) in the same
process tree: the baseline is what the sending side alone can do here.

Parse CPU: ``inbound.parsing.parse`` over the corpus of real-world shapes in
``inbound/tests/corpus`` (Outlook and Gmail replies, forwarded, calendar invite, inline image,
winmail.dat, broken MIME, 8-bit ISO-8859-2), and ``post_body`` (the JSON posted, attachments read
back from the raw source), best of three rounds of ``time.process_time``.

Goals: every accepted message posted exactly once; parse at most 2 ms CPU per message.
"""

from __future__ import annotations

import contextlib
import json
import os
import smtplib
import sys
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP

from bench.common import (
    RUNSMTP,
    benchmark_parser,
    django_script,
    free_port,
    gateway_env,
    goal_lines,
    manage,
    prepare_vhost,
    procfile_command,
    run_benchmark,
    scratch_dir,
    start,
    step,
    throwaway_database,
)
from bench.webhooks import FastReceiver

PARSE_GOAL_MS = 2.0

SETUP = r"""
import json
from servers.models import Server
from streams.services import create_server
from inbound.addresses import inbound_address
server = create_server("inbound-bench")
Server.objects.filter(pk=server.pk).update(inbound_hook_url=HOOK)
server.refresh_from_db()
print(json.dumps({"address": inbound_address(server)}))
"""

PARSE = r"""
import json, sys, time, django
from pathlib import Path
django.setup()
from inbound.parsing import parse, post_body

rounds = json.loads(sys.argv[1])["rounds"]
corpus = [p.read_bytes() for p in sorted(Path("inbound/tests/corpus").glob("*.eml"))]
recipient = "0123456789abcdef0123456789abcdef+case-42@inbound.example.com"

def best(work):
    for raw in corpus:
        work(raw)
    figures = []
    for _ in range(3):
        start = time.process_time()
        for _ in range(rounds):
            for raw in corpus:
                work(raw)
        figures.append((time.process_time() - start) / (rounds * len(corpus)))
    return min(figures) * 1000

parsed = {}
def parse_one(raw):
    parsed[raw] = parse(raw, recipient, "sender@example.org")

def post_one(raw):
    item = parsed[raw]
    post_body(item.payload, raw, raw_email=False)

print(json.dumps({
    "messages": len(corpus),
    "bytes": sum(map(len, corpus)),
    "parse_ms": round(best(parse_one), 3),
    "post_body_ms": round(best(post_one), 3),
}))
"""

COUNT = r"""
import json, django
django.setup()
from inbound.models import InboundMessage
print(json.dumps({s: InboundMessage.objects.filter(status=s).count()
                  for s in ("queued", "processed", "failed", "blocked", "scheduled")}))
"""


def message(to: str, number: int) -> bytes:
    """A reply with quoted history, text and HTML parts and a 4 KB attachment."""
    mail = EmailMessage()
    mail["From"] = "Customer <customer@example.org>"
    mail["To"] = to
    mail["Subject"] = f"Re: Ticket #{number}"
    mail["In-Reply-To"] = f"<ticket-{number}@app.example.com>"
    mail["Message-ID"] = f"<reply-{number}@example.org>"
    mail.set_content(
        "Thanks, that fixed it.\n\nOn Mon, 7 Dec 2026 at 10:00, Support wrote:\n"
        + "> Could you try again?\n" * 20
    )
    html = "<p>Thanks, that fixed it.</p><blockquote>Could you try again?</blockquote>"
    mail.add_alternative(html, subtype="html")
    mail.add_attachment(b"x" * 4096, maintype="application", subtype="octet-stream",
                        filename="log.txt")  # fmt: skip
    return mail.as_bytes(policy=SMTP)


def send_all(port: int, to: str, messages: int, concurrency: int) -> dict:
    """Send ``messages`` over ``concurrency`` connections; the seconds from the first MAIL to the
    last 250, and how many were accepted."""
    bodies = [message(to, n) for n in range(messages)]
    shares = [bodies[i::concurrency] for i in range(concurrency)]
    accepted, refused = [0], [0]
    lock = threading.Lock()

    def client(share):
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            smtp.ehlo("sender.example.org")
            for body in share:
                try:
                    smtp.sendmail("customer@example.org", [to], body)
                    ok = True
                except smtplib.SMTPException:
                    ok = False
                with lock:
                    (accepted if ok else refused)[0] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(share,)) for share in shares if share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"started": started, "seconds": time.monotonic() - started,
            "accepted": accepted[0], "refused": refused[0]}  # fmt: skip


def baseline(stack, work, messages: int, concurrency: int) -> float:
    """Messages per second the same sender reaches against a bare aiosmtpd sink."""
    port = free_port()
    sink = start(stack, "sink", [sys.executable, "-m", "bench.sink", "--port", str(port)],
                 dict(os.environ), work)  # fmt: skip
    sink.wait_for("listening")
    sent = send_all(port, "anyone@sink.example", messages, concurrency)
    sink.stop()
    return sent["accepted"] / sent["seconds"]


def run(cfg, stack: contextlib.ExitStack) -> dict:
    work = scratch_dir(stack, "bench-inbound-")
    data_dir = work / "data"
    messages = 200 if cfg.quick else cfg.messages
    settings = {"WEBHOOK_ALLOW_PRIVATE_URLS": "true", "INBOUND_DOMAIN": "inbound.bench.test"}
    if cfg.database == "postgres":
        database_url = throwaway_database(stack, f"bench_inbound_{os.getpid()}")
        settings["CELERY_BROKER_URL"] = prepare_vhost(stack, f"bench_inbound_{os.getpid()}")
    else:
        database_url = f"sqlite:///{data_dir / 'bench.sqlite3'}"
    env = {**gateway_env(database_url, data_dir), **settings, "LOG_LEVEL": "WARNING"}
    if cfg.database != "postgres":
        env.pop("CELERY_BROKER_URL", None)

    step("parse CPU per message over the corpus")
    parsing = django_script(env, PARSE, json.dumps({"rounds": 5 if cfg.quick else 40}))

    step("preparing the database (migrate, a server with an InboundHookUrl)")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    receiver = FastReceiver()
    stack.callback(receiver.stop)
    setup = SETUP.replace("HOOK", repr(f"http://127.0.0.1:{receiver.port}/inbound"))
    address = json.loads(manage(env, "shell", "-c", setup).strip().splitlines()[-1])["address"]

    step(f"baseline: {messages} messages to a bare aiosmtpd sink")
    sink_rate = baseline(stack, work, messages, cfg.concurrency)

    port = free_port()
    gateway_args = [sys.executable, "-c", RUNSMTP, "--processes", "1",
                    "--listen", f"inbound=127.0.0.1:{port}"]  # fmt: skip
    start(stack, "gateway", gateway_args, {**env, "LOG_LEVEL": "INFO"}, work).wait_for(
        "SMTP gateway ready"
    )
    worker = start(stack, "worker", procfile_command("worker"), {**env, "LOG_LEVEL": "INFO"}, work)
    worker.wait_for(" ready.", timeout=120)
    step(f"{messages} messages to {address} over {cfg.concurrency} connections")
    sent = send_all(port, address, messages, cfg.concurrency)
    deadline = time.monotonic() + cfg.timeout
    while len(receiver.times) < sent["accepted"] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a late duplicate would show here
    posts = sorted(receiver.times)
    end_to_end = (posts[-1] - sent["started"]) if posts else 0.0
    statuses = django_script(env, COUNT)
    rate = len(posts) / end_to_end if end_to_end else 0.0
    result = {
        "config": {
            "messages": messages,
            "concurrency": cfg.concurrency,
            "database": cfg.database,
        },  # fmt: skip
        "parsing": parsing,
        "accepted": sent["accepted"],
        "refused": sent["refused"],
        "accept_per_second": round(sent["accepted"] / sent["seconds"], 1),
        "posts": len(posts),
        "accept_to_webhook_per_second": round(rate, 1),
        "sink_per_second": round(sink_rate, 1),
        "ratio_to_sink": round(rate / sink_rate, 3) if sink_rate else 0.0,
        "statuses": statuses,
    }
    result["goals"] = [
        {
            "goal": "inbound: every accepted message posted to the hook exactly once",
            "passed": sent["accepted"] == messages and len(posts) == sent["accepted"],
            "measured": f"{len(posts):,} posts for {sent['accepted']:,} accepted",
            "note": f"{rate:,.0f} msg/s accept-to-webhook, {result['ratio_to_sink']:.2f}x "
            f"a bare aiosmtpd sink's accept rate ({sink_rate:,.0f}/s); {cfg.database}",
        },
        {
            "goal": f"inbound: parse <= {PARSE_GOAL_MS:g} ms CPU per message (corpus mix)",
            "passed": parsing["parse_ms"] <= PARSE_GOAL_MS,
            "measured": f"{parsing['parse_ms']:.3f} ms",
            "note": f"post_body {parsing['post_body_ms']:.3f} ms; {parsing['messages']} shapes",
        },
    ]
    return result


def report(result: dict) -> str:
    cfg, parsing = result["config"], result["parsing"]
    lines = [
        f"Inbound MX ({cfg['database']}; {cfg['messages']} messages over {cfg['concurrency']} "
        "connections; the Procfile's worker)",
        f"  accepted {result['accepted']:,} ({result['refused']:,} refused) at "
        f"{result['accept_per_second']:,.0f}/s",
        f"  accept to webhook {result['accept_to_webhook_per_second']:,.0f} msg/s "
        f"({result['posts']:,} posts); bare aiosmtpd sink {result['sink_per_second']:,.0f} msg/s; "
        f"ratio {result['ratio_to_sink']:.3f}",
        f"  statuses {result['statuses']}",
        f"  parse {parsing['parse_ms']:.3f} ms CPU per message, post_body "
        f"{parsing['post_body_ms']:.3f} ms ({parsing['messages']} corpus shapes, "
        f"{parsing['bytes']:,} B)",
    ]
    return "\n".join(lines + goal_lines(result["goals"]))


def main(argv=None) -> int:
    parser = benchmark_parser("bench.inbound", __doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for posts")
    cfg = parser.parse_args(argv)
    run_benchmark(cfg, run, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
