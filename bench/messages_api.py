"""Messages API timings at scale: 1,000,000 outbound messages over 10 servers in a throwaway
PostgreSQL database.

    python -m bench.messages_api [--messages 1000000] [--servers 10] [--requests 20] [--quick]
        [--json PATH]

1. creates ``bench_messages_<pid>`` and migrates it;
2. fills it with ``bench.dashboard.fill`` (submissions, outbound messages, one recipient each,
   Delivery events, 45 days of dates; ``INSERT ... SELECT generate_series``), then gives the
   messages a realistic mix: 3 % queued, 2 % sandboxed, 1 % bounced, 30 % with an ``order``
   metadata value, and Open (10 %) and Click (3 %) events; then ``VACUUM ANALYZE``;
3. times ``GET /messages/outbound?count=500&offset=0`` with each filter alone,
   ``/messages/outbound/{id}/details`` and ``/dump``, and ``/messages/outbound/opens`` and
   ``/clicks`` through Django's test client in a subprocess whose DATABASE_URL is that database
   (the whole request: routing, token authentication, DRF, queries, JSON), median and p95 of N
   requests after a warm-up; a request over the goal (median <= 50 ms, as the bounce API) gets the
   EXPLAIN ANALYZE of its slowest query in the JSON;
4. drops the database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

from bench.common import (
    API_TIMING,
    benchmark_parser,
    django_env,
    django_script,
    goal_lines,
    manage,
    run_benchmark,
    scratch_dir,
    step,
    throwaway_database,
)

GOAL_MEDIAN_MS = 50.0

FILL = r"""
import json, sys, django
django.setup()
from django.db import connection
from bench.dashboard import fill
from messages.models import MessageEvent, OutboundMessage
from servers.models import Server
counts = fill(connection, messages=int(sys.argv[1]), bounces=int(sys.argv[1]) // 10,
              servers=int(sys.argv[2]))
messages, events = OutboundMessage._meta.db_table, MessageEvent._meta.db_table
agent = {"UserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0",
         "Platform": "Desktop",
         "Client": {"Name": "Chrome 120.0", "Company": "Google", "Family": "Chrome"},
         "OS": {"Name": "Windows 10", "Company": "Microsoft Corporation", "Family": "Windows"},
         "Geo": {}}
with connection.cursor() as cursor:
    cursor.execute(f"UPDATE {messages} SET status = CASE WHEN id % 100 < 3 THEN 'queued' "
                   f"WHEN id % 100 < 5 THEN 'sandboxed' WHEN id % 100 < 6 THEN 'bounced' "
                   f"ELSE status END, "
                   f"from_address = CASE WHEN id % 10 = 0 THEN 'Billing <billing@example.com>' "
                   f"ELSE from_address END, "
                   f"from_email = CASE WHEN id % 10 = 0 THEN 'billing@example.com' "
                   f"ELSE 'app@example.com' END, "
                   f"metadata = CASE WHEN id % 10 < 3 THEN "
                   f"jsonb_build_object('order', (id % 100000)::text) ELSE metadata END")
    for kind, share, extra in (("Open", 10, {"FirstOpen": True, "ReadSeconds": 0}),
                               ("Click", 33, {"OriginalLink": "https://example.com/x",
                                              "ClickLocation": "HTML"})):
        cursor.execute(
            f"INSERT INTO {events} (server_id, stream_id, outbound_id, message_id, type, "
            f"recipient, details, data, occurred_at) SELECT server_id, stream_id, id, "
            f"message_id, %s, recipients->>0, '', %s::jsonb, received_at + interval '1 hour' "
            f"FROM {messages} WHERE mod(id, {share}) = 0",
            [kind, json.dumps({**extra, **agent})])
server = Server.objects.order_by("id").first()
print(json.dumps({"counts": counts, "server": server.id, "token": server.api_tokens[0]}))
"""


def requests_for(conn, server_id: int, skip: int) -> dict:
    """The requests to time, with filter values that exist for this server."""
    row = conn.execute(
        "SELECT m.message_id, m.recipients->>0, m.tag, m.subject FROM outbound_outboundmessage m "
        "JOIN streams_messagestream s ON s.id = m.stream_id WHERE m.server_id = %s "
        "AND s.stream_id = 'outbound' AND m.metadata ? 'order' ORDER BY m.id LIMIT 1 OFFSET %s",
        (server_id, skip),
    ).fetchone()
    message_id, recipient, tag, subject = str(row[0]), row[1], row[2], row[3]
    order = conn.execute(
        "SELECT metadata->>'order' FROM outbound_outboundmessage WHERE message_id = %s",
        (message_id,),
    ).fetchone()[0]
    days = conn.execute(
        "SELECT (now() - interval '20 days')::date, (now() - interval '14 days')::date"
    ).fetchone()
    base = "/messages/outbound?count=500&offset=0"
    opens = "/messages/outbound/opens?count=500&offset=0"
    return {
        "baseline: GET /messages/outbound/<id>/dump": f"/messages/outbound/{message_id}/dump",
        "none (server + stream only)": base,
        "recipient": f"{base}&recipient={recipient}",
        "fromemail (90 % of the mail)": f"{base}&fromemail=app@example.com",
        "fromemail (10 %)": f"{base}&fromemail=billing@example.com",
        "tag": f"{base}&tag={tag}",
        "status=queued": f"{base}&status=queued",
        "status=processed": f"{base}&status=processed",
        "subject (a rare part)": f"{base}&subject={subject.split()[-1]}",
        "fromdate/todate": f"{base}&fromdate={days[0]}&todate={days[1]}",
        "messagestream": f"{base}&messagestream=broadcast",
        "metadata_order": f"{base}&metadata_order={order}",
        "last page (offset 9500)": "/messages/outbound?count=500&offset=9500",
        "details": f"/messages/outbound/{message_id}/details",
        "opens": opens,
        "clicks": "/messages/outbound/clicks?count=500&offset=0",
        "opens of a recipient": f"{opens}&recipient={recipient}",
    }  # fmt: skip


def explain(conn, sql: str) -> str:
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql).fetchall()
    return "\n".join(r[0] for r in rows)


def run(cfg, stack: contextlib.ExitStack) -> dict:
    import psycopg

    name = f"bench_messages_{os.getpid()}"
    url = throwaway_database(stack, name)
    work = scratch_dir(stack, "messagesbench-")
    env = django_env(url, work / "data", log_level="WARNING", DEBUG="false",
                     ALLOWED_HOSTS="testserver,127.0.0.1,localhost")  # fmt: skip
    step(f"migrating {name}")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    step(f"filling {cfg.messages:,} messages over {cfg.servers} servers")
    started = time.perf_counter()
    filled = django_script(env, FILL, str(cfg.messages), str(cfg.servers))
    result = {"config": dict(vars(cfg)), "fill_seconds": round(time.perf_counter() - started, 1)}
    result["rows"] = filled["counts"]
    conn = psycopg.connect(url, autocommit=True)
    stack.callback(conn.close)
    conn.execute("VACUUM ANALYZE")
    result["table_size"] = conn.execute(
        "SELECT pg_size_pretty(pg_total_relation_size('outbound_outboundmessage'))"
    ).fetchone()[0]
    result["server_rows"] = conn.execute(
        "SELECT count(*) FROM outbound_outboundmessage WHERE server_id = %s", (filled["server"],)
    ).fetchone()[0]
    requests = requests_for(conn, filled["server"], 7 if cfg.quick else 777)
    timing_cfg = {"token": filled["token"], "warmup": cfg.warmup, "repeat": cfg.requests}
    step(f"timing {len(requests)} requests x {cfg.requests} (test client, subprocess)")
    timings = django_script(env, API_TIMING, json.dumps({**timing_cfg, "requests": requests}))
    for label, timing in timings.items():
        if not label.startswith("baseline") and timing["median_ms"] > GOAL_MEDIAN_MS:
            slowest = max(timing["queries"], key=lambda q: q["ms"])
            timing["explain"] = explain(conn, slowest["sql"])
    result["requests"] = timings
    result["goals"] = [
        {
            "goal": f"Messages API {label} <= {GOAL_MEDIAN_MS:.0f} ms median "
            f"({cfg.messages:,} messages)",
            "passed": timing["median_ms"] <= GOAL_MEDIAN_MS,
            "measured": f"{timing['median_ms']:.1f} ms (p95 {timing['p95_ms']:.1f})",
            "note": "",
        }
        for label, timing in timings.items()
        if not label.startswith("baseline")
    ]
    return result


def report(result: dict) -> str:
    cfg = result["config"]
    lines = [
        f"Messages API benchmark: {cfg['messages']:,} messages over {cfg['servers']} servers "
        f"(outbound_outboundmessage {result['table_size']}, filled in {result['fill_seconds']} s);"
        f" server under test has {result['server_rows']:,}; {cfg['requests']} requests each "
        f"after {cfg['warmup']} warm-up, Django test client",
        "",
        f"  {'request':<34}{'median ms':>10}{'p95 ms':>9}{'total':>9}",
    ]
    for label, timing in result["requests"].items():
        total = "" if timing["total_count"] is None else f"{timing['total_count']:,}"
        lines.append(f"  {label:<34}{timing['median_ms']:>10.1f}{timing['p95_ms']:>9.1f}{total:>9}")
    for label, timing in result["requests"].items():
        if "explain" in timing:
            lines += ["", f"  {label}: slowest query plan", timing["explain"]]
    lines += ["", *goal_lines(result["goals"])]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser("bench.messages_api", __doc__)
    add = parser.add_argument
    add("--messages", type=int, help="messages in total (default 1000000; quick 20000)")
    add("--servers", type=int, default=10)
    add("--requests", type=int, help="timed requests per query (default 20; quick 5)")
    add("--warmup", type=int, default=3)
    cfg = parser.parse_args(argv)
    if cfg.messages is None:
        cfg.messages = 20_000 if cfg.quick else 1_000_000
    if cfg.requests is None:
        cfg.requests = 5 if cfg.quick else 20
    return cfg


def main(argv=None) -> int:
    run_benchmark(parse_args(argv), run, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
