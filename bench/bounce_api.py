"""Bounce API timings at scale: 1,000,000 bounces over 10 servers in a throwaway PostgreSQL
database.

    python -m bench.bounce_api [--bounces 1000000] [--servers 10] [--requests 20] [--no-indexes]
        [--quick] [--json PATH]

1. creates ``bench_bounces_<pid>``, migrates it and creates the servers (each with its API token);
2. fills ``bounces_bounce`` with one ``INSERT ... SELECT generate_series`` (realistic mix: ~85 %
   outbound / 15 % broadcast, 20 types weighted as real traffic, ~200,000 distinct addresses that
   bounce repeatedly, 40 % untagged, 45 days of dates, hard bounces and complaints inactive, a
   ~1 KB dump each), then ``VACUUM ANALYZE`` (what autovacuum would have done);
3. times ``GET /bounces?count=500&offset=0`` with each single filter and ``GET /deliverystats``
   through Django's test client in a subprocess whose DATABASE_URL is that database (the whole
   request: routing, token authentication, DRF, queries, JSON), median and p95 of N requests after a
   warm-up, against a baseline in the same run: ``GET /bounces/<id>`` (one indexed row);
4. for each request that misses the goal (median <= 50 ms): EXPLAIN ANALYZE of its slowest query,
   then the candidate index created in the throwaway database, the request timed again, and the
   index dropped — both figures reported;
5. drops the database.
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

SETUP = """
import json, sys, django
django.setup()
from streams.services import create_server
servers = []
for n in range(int(sys.argv[1])):
    server = create_server(f"bench-{n}")
    servers.append({"id": server.id, "token": server.api_tokens[0]})
print(json.dumps(servers))
"""

# Weighted bounce types (cumulative thresholds on one random() draw).
TYPES = [
    ("HardBounce", 0.40), ("SoftBounce", 0.15), ("Transient", 0.15), ("Blocked", 0.06),
    ("SMTPApiError", 0.05), ("AutoResponder", 0.04), ("DnsError", 0.03), ("SpamComplaint", 0.03),
    ("Unsubscribe", 0.02), ("SpamNotification", 0.02), ("BadEmailAddress", 0.01),
    ("ManuallyDeactivated", 0.01), ("Unknown", 0.01), ("DMARCPolicy", 0.01),
    ("ChallengeVerification", 0.005), ("VirusNotification", 0.005),
]  # fmt: skip
INACTIVE_TYPES = ("HardBounce", "SpamComplaint", "ManuallyDeactivated", "BadEmailAddress")
TAGS = ["welcome", "password-reset", "receipt", "invoice", "newsletter", "digest", "alert",
        "signup", "order-shipped", "trial-ending"]  # fmt: skip


def fill_sql(count: int, server_ids: list[int]) -> str:
    """One INSERT ... SELECT over generate_series (numbers only from our own arguments)."""
    cases, total = [], 0.0
    for name, weight in TYPES:
        total += weight
        cases.append(f"WHEN r_type < {total:.4f} THEN '{name}'")
    type_case = "CASE " + " ".join(cases) + " ELSE 'Unknown' END"
    servers = ",".join(str(i) for i in server_ids)
    tags = ",".join(f"'{t}'" for t in TAGS)
    inactive = ",".join(f"'{t}'" for t in INACTIVE_TYPES)
    # Every interpolated value is ours (numbers, fixed names): no outside input reaches the SQL.
    return f"""
    INSERT INTO bounces_bounce (server_id, stream_id, message_stream, type, message_id, email,
        from_address, subject, tag, metadata, details, content, bounced_at, inactive,
        can_activate)
    SELECT x.server_id, ms.id, x.message_stream, x.type, x.message_id, x.email,
        'app@example.com', 'Your receipt #' || x.g, x.tag, '{{}}'::jsonb,
        'smtp;550 5.1.1 <' || x.email || '>: Recipient address rejected: User unknown',
        x.dump, x.bounced_at, x.type IN ({inactive}), x.type IN ({inactive}) AND
        x.type <> 'SpamComplaint'
    FROM (
        SELECT g,
            (ARRAY[{servers}])[1 + (g % {len(server_ids)})] AS server_id,
            CASE WHEN random() < 0.85 THEN 'outbound' ELSE 'broadcast' END AS message_stream,
            {type_case} AS type,
            gen_random_uuid() AS message_id,
            'user' || floor(random() * 200000)::int || '@example-'
                || floor(random() * 50)::int || '.com' AS email,
            CASE WHEN random() < 0.4 THEN '' ELSE (ARRAY[{tags}])[1 + floor(random() * 10)::int]
                END AS tag,
            now() - random() * interval '45 days' AS bounced_at,
            repeat(md5(g::text), 32) AS dump
        FROM (SELECT g, random() AS r_type FROM generate_series(1, {count}) AS g) AS s
    ) AS x
    LEFT JOIN streams_messagestream ms
        ON ms.server_id = x.server_id AND ms.stream_id = x.message_stream
    """  # noqa: S608


# Candidate index per request (created in the throwaway database only, to measure its effect).
CANDIDATES = {
    "type": [
        "CREATE INDEX bench_cand ON bounces_bounce (server_id, message_stream, type, "
        "bounced_at DESC, id DESC)"
    ],
    "inactive": [
        "CREATE INDEX bench_cand ON bounces_bounce (server_id, message_stream, inactive, "
        "bounced_at DESC, id DESC)"
    ],
    "emailFilter": [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE INDEX bench_cand ON bounces_bounce USING gin (UPPER(email::text) gin_trgm_ops)",
    ],
    "tag": [
        "CREATE INDEX bench_cand ON bounces_bounce (server_id, message_stream, tag, "
        "bounced_at DESC, id DESC)"
    ],
    "fromdate/todate": [
        "CREATE INDEX bench_cand ON bounces_bounce (server_id, message_stream, bounced_at DESC, "
        "id DESC)"
    ],
    "messagestream": [
        "CREATE INDEX bench_cand ON bounces_bounce (server_id, message_stream, bounced_at DESC, "
        "id DESC)"
    ],
    "none (server + stream only)": [
        "CREATE INDEX bench_cand ON bounces_bounce (server_id, message_stream, bounced_at DESC, "
        "id DESC)"
    ],
    "deliverystats": [
        # COUNT("id") per type: with id in the index the count is an index-only scan.
        "CREATE INDEX bench_cand ON bounces_bounce (server_id, type, id)",
    ],
}


def requests_for(conn, server: dict, quick: bool) -> dict:
    """The requests to time, with filter values that exist for this server."""
    row = conn.execute(
        "SELECT message_id, email, id FROM bounces_bounce WHERE server_id = %s "
        "AND message_stream = 'outbound' ORDER BY id LIMIT 1 OFFSET 777",
        (server["id"],),
    ).fetchone()
    message_id, email, bounce_id = str(row[0]), row[1], row[2]
    local = email.split("@")[0]  # e.g. user12345: a substring, as a support agent would type it
    base = "/bounces?count=500&offset=0"
    return {
        "baseline: GET /bounces/<id>": f"/bounces/{bounce_id}",
        "none (server + stream only)": base,
        "type": f"{base}&type=SoftBounce",
        "inactive": f"{base}&inactive=true",
        "emailFilter": f"{base}&emailFilter={local}@",
        "tag": f"{base}&tag=receipt",
        "messageID": f"{base}&messageID={message_id}",
        "fromdate/todate": base + "&fromdate={from}&todate={to}",
        "messagestream": f"{base}&messagestream=broadcast",
        "deliverystats": "/deliverystats",
    }


def date_window(conn) -> tuple[str, str]:
    """A one-week window in the middle of the data (US Eastern dates, as Postmark reads them)."""
    row = conn.execute(
        "SELECT (now() - interval '20 days')::date, (now() - interval '14 days')::date"
    ).fetchone()
    return str(row[0]), str(row[1])


def explain(conn, sql: str) -> str:
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql).fetchall()
    return "\n".join(r[0] for r in rows)


def run(cfg, stack: contextlib.ExitStack) -> dict:
    import psycopg

    name = f"bench_bounces_{os.getpid()}"
    url = throwaway_database(stack, name)
    work = scratch_dir(stack, "bouncebench-")
    # The test client's host is "testserver"; DEBUG off, as in production.
    env = django_env(url, work / "data", log_level="WARNING", DEBUG="false",
                     ALLOWED_HOSTS="testserver,127.0.0.1,localhost")  # fmt: skip
    step(f"migrating {name}")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    servers = django_script(env, SETUP, str(cfg.servers))
    result = {"config": {k: v for k, v in vars(cfg).items()}, "servers": len(servers)}
    conn = psycopg.connect(url, autocommit=True)
    stack.callback(conn.close)
    step(f"filling {cfg.bounces:,} bounces over {len(servers)} servers")
    started = time.perf_counter()
    conn.execute(fill_sql(cfg.bounces, [s["id"] for s in servers]))
    result["fill_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    conn.execute("VACUUM ANALYZE bounces_bounce")
    result["vacuum_analyze_seconds"] = round(time.perf_counter() - started, 1)
    result["table_size"] = conn.execute(
        "SELECT pg_size_pretty(pg_total_relation_size('bounces_bounce'))"
    ).fetchone()[0]
    server = servers[0]
    result["server_rows"] = conn.execute(
        "SELECT count(*) FROM bounces_bounce WHERE server_id = %s", (server["id"],)
    ).fetchone()[0]
    start_day, end_day = date_window(conn)
    requests = {
        k: v.replace("{from}", start_day).replace("{to}", end_day)
        for k, v in requests_for(conn, server, cfg.quick).items()
    }
    timing_cfg = {"token": server["token"], "warmup": cfg.warmup, "repeat": cfg.requests}
    step(f"timing {len(requests)} requests x {cfg.requests} (test client, subprocess)")
    timings = django_script(env, API_TIMING, json.dumps({**timing_cfg, "requests": requests}))
    result["requests"] = timings
    result["with_index"] = {}
    for label, timing in timings.items():
        if label.startswith("baseline") or timing["median_ms"] <= GOAL_MEDIAN_MS:
            continue
        slowest = max(timing["queries"], key=lambda q: q["ms"])
        timing["explain"] = explain(conn, slowest["sql"])
        statements = CANDIDATES.get(label)
        if not statements or cfg.no_indexes:
            continue
        step(f"{label}: {timing['median_ms']} ms; trying the candidate index")
        try:
            for statement in statements:
                conn.execute(statement)
            conn.execute("ANALYZE bounces_bounce")
            again = django_script(
                env, API_TIMING, json.dumps({**timing_cfg, "requests": {label: timing["path"]}})
            )[label]
            slowest = max(again["queries"], key=lambda q: q["ms"])
            again["explain"] = explain(conn, slowest["sql"])
            again["index"] = [s for s in statements if s.startswith("CREATE INDEX")]
            result["with_index"][label] = again
        finally:
            conn.execute("DROP INDEX IF EXISTS bench_cand")
            conn.execute("DROP INDEX IF EXISTS bench_cand2")
    result["goals"] = goals(result)
    return result


def goals(result: dict) -> list[dict]:
    entries = []
    for label, timing in result["requests"].items():
        if label.startswith("baseline"):
            continue
        indexed = result["with_index"].get(label)
        note = ""
        if indexed:
            note = f"with the candidate index: {indexed['median_ms']:.1f} ms median"
        entries.append(
            {
                "goal": f"bounce API {label} <= {GOAL_MEDIAN_MS:.0f} ms median "
                f"({result['config']['bounces']:,} bounces)",
                "passed": timing["median_ms"] <= GOAL_MEDIAN_MS,
                "measured": f"{timing['median_ms']:.1f} ms (p95 {timing['p95_ms']:.1f})",
                "note": note,
            }
        )
    return entries


def report(result: dict) -> str:
    cfg = result["config"]
    lines = [
        f"Bounce API benchmark: {cfg['bounces']:,} bounces over {result['servers']} servers "
        f"({result['table_size']}, filled in {result['fill_seconds']} s); server under test has "
        f"{result['server_rows']:,}; {cfg['requests']} requests each after {cfg['warmup']} "
        "warm-up, Django test client",
        "",
        f"  {'request':<30}{'median ms':>10}{'p95 ms':>9}{'total':>9}{'index ms':>10}",
    ]
    for label, timing in result["requests"].items():
        indexed = result["with_index"].get(label)
        total = "" if timing["total_count"] is None else f"{timing['total_count']:,}"
        lines.append(
            f"  {label:<30}{timing['median_ms']:>10.1f}{timing['p95_ms']:>9.1f}{total:>9}"
            f"{indexed['median_ms'] if indexed else '':>10}"
        )
    for label, indexed in result["with_index"].items():
        lines.append(f"  candidate for {label}: {'; '.join(indexed['index'])}")
    lines += ["", *goal_lines(result["goals"])]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser("bench.bounce_api", __doc__)
    add = parser.add_argument
    add("--bounces", type=int, help="bounces in total (default 1000000; quick 20000)")
    add("--servers", type=int, default=10)
    add("--requests", type=int, help="timed requests per query (default 20; quick 5)")
    add("--warmup", type=int, default=3)
    add("--no-indexes", action="store_true", help="do not try candidate indexes")
    cfg = parser.parse_args(argv)
    if cfg.bounces is None:
        cfg.bounces = 20_000 if cfg.quick else 1_000_000
    if cfg.requests is None:
        cfg.requests = 5 if cfg.quick else 20
    return cfg


def main(argv=None) -> int:
    run_benchmark(parse_args(argv), run, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
