"""The stats API at scale: fill a throwaway PostgreSQL database with 1,000,000 messages over 45
days (``bench.dashboard.fill``: bulk INSERT … SELECT), opens and clicks of a share of them, build
the daily roll-ups once (``stats.rollup.recount``), then time the periodic recount of the recent
days and GETs of ``/stats/outbound`` and its series with Django's test client.

    python -m bench.stats [--messages 1000000] [--bounces 100000] [--repeat 9] [--quick]
        [--json PATH] [--admin-url postgres://postgres@127.0.0.1:5432/postgres]

Goal: every request's median ≤ 50 ms. The recount of the recent days is reported (it runs every
minute, so it must take well under a minute).
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.common import POSTGRES_ADMIN_URL, django_env, throwaway_database
from bench.dashboard import fill

DEFAULT_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", POSTGRES_ADMIN_URL)
TARGET_MS = 50.0


def fill_tracking(connection) -> dict:
    """Open tracking on half the messages; a first open of every fifth message (and a second open
    of every tenth), a click on every twentieth, with readers of several platforms and clients."""
    from messages.models import MessageEvent, OutboundMessage

    message_table, event_table = OutboundMessage._meta.db_table, MessageEvent._meta.db_table
    reader = (
        "'Platform', (ARRAY['Desktop','Mobile','WebMail','Unknown'])[1 + o.id % 4], "
        "'Client', jsonb_build_object('Family', "
        "(ARRAY['Gmail','Apple Mail','Outlook','Thunderbird','Chrome'])[1 + o.id % 5])"
    )
    # S608: only the models' table names and fixed SQL are formatted in.
    statements = [
        f"UPDATE {message_table} SET track_opens = (id % 2 = 0), "  # noqa: S608
        "track_links = CASE WHEN id % 4 = 0 THEN 'HtmlAndText' ELSE 'None' END",
        f"""INSERT INTO {event_table} (server_id, stream_id, outbound_id, message_id, type,
              recipient, details, data, occurred_at)
           SELECT o.server_id, o.stream_id, o.id, o.message_id, 'Open', o.recipients->>0, '',
              jsonb_build_object('FirstOpen', n = 1, {reader}, 'ReadSeconds', 0),
              o.received_at + interval '1 hour' * n
           FROM {message_table} o, generate_series(1, 2) AS n
           WHERE o.id % 5 = 0 AND (n = 1 OR o.id % 10 = 0)""",  # noqa: S608
        f"""INSERT INTO {event_table} (server_id, stream_id, outbound_id, message_id, type,
              recipient, details, data, occurred_at)
           SELECT o.server_id, o.stream_id, o.id, o.message_id, 'Click', o.recipients->>0, '',
              jsonb_build_object('OriginalLink', 'https://example.com/' || (o.id % 3),
                 'ClickLocation', CASE WHEN o.id % 3 = 0 THEN 'Text' ELSE 'HTML' END, {reader}),
              o.received_at + interval '2 hours'
           FROM {message_table} o WHERE o.id % 20 = 0""",  # noqa: S608
        "ANALYZE",
    ]
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
        cursor.execute(f"SELECT type, count(*) FROM {event_table} GROUP BY type")  # noqa: S608
        return dict(cursor.fetchall())


def requests_for(today) -> list[tuple[str, str]]:
    month = f"fromdate={(today.replace(day=1)).isoformat()}&todate={today.isoformat()}"
    return [
        ("overview", "/stats/outbound"),
        ("overview: tag", "/stats/outbound?tag=tag7"),
        ("overview: stream", "/stats/outbound?messagestream=outbound"),
        ("overview: this month", f"/stats/outbound?{month}"),
        ("sends", "/stats/outbound/sends"),
        ("sends: tag, stream, month", f"/stats/outbound/sends?tag=tag7&messagestream=outbound&"
                                      f"{month}"),
        ("bounces", "/stats/outbound/bounces"),
        ("spam", "/stats/outbound/spam"),
        ("tracked", "/stats/outbound/tracked"),
        ("opens", "/stats/outbound/opens"),
        ("opens/platforms", "/stats/outbound/opens/platforms"),
        ("opens/emailclients", "/stats/outbound/opens/emailclients"),
        ("clicks", "/stats/outbound/clicks"),
        ("clicks/browserfamilies", "/stats/outbound/clicks/browserfamilies"),
        ("clicks/platforms", "/stats/outbound/clicks/platforms"),
        ("clicks/location", f"/stats/outbound/clicks/location?{month}"),
    ]  # fmt: skip


def time_requests(client, requests, repeat: int) -> dict:
    results = {}
    for label, url in requests:
        runs, status = [], None
        for _ in range(repeat + 1):
            started = time.perf_counter()
            response = client.get(url)
            runs.append((time.perf_counter() - started) * 1000)
            status = response.status_code
        results[label] = {
            "url": url,
            "status": status,
            "cold_ms": round(runs[0], 2),
            "median_ms": round(statistics.median(runs[1:]), 2),
            "max_ms": round(max(runs[1:]), 2),
        }
    return results


def run(admin_url: str, *, messages: int, bounces: int, repeat: int, out=sys.stdout) -> dict:
    """Create ``bench_stats_<pid>``, fill it, build the roll-ups, time the requests, drop it.
    Must run in a process where Django is not set up yet (it configures Django for it)."""
    name = f"bench_stats_{os.getpid()}"
    with contextlib.ExitStack() as stack:
        url = throwaway_database(stack, name, admin_url=admin_url)
        os.environ.update(django_env(url, log_level=os.environ.get("LOG_LEVEL", "WARNING")))
        import django

        django.setup()
        from datetime import timedelta

        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection, connections
        from django.test import Client

        from servers.models import Server
        from stats.models import DailyCount
        from stats.rollup import recount, refresh, today

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        counts = fill(connection, messages=messages, bounces=bounces)
        counts["events"] = fill_tracking(connection)
        print(f"filled {name} in {time.perf_counter() - started:.1f} s: {counts}", file=out)
        started = time.perf_counter()
        recount(today() - timedelta(days=46), today())
        build_s = time.perf_counter() - started
        refresh_runs = []
        for _ in range(3):
            started = time.perf_counter()
            refresh()
            refresh_runs.append(time.perf_counter() - started)
        rollups = DailyCount.objects.count()
        refresh_ms = statistics.median(refresh_runs) * 1000
        print(f"roll-ups: {rollups} rows, built in {build_s:.1f} s; recount of the recent days "
              f"{refresh_ms:.0f} ms (median of 3)", file=out)  # fmt: skip
        server = Server.objects.order_by("id").first()
        client = Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)
        results = time_requests(client, requests_for(today()), repeat)
        print(f"{'request':30} {'status':>6} {'cold ms':>8} {'median ms':>10} {'max ms':>8}",
              file=out)  # fmt: skip
        goals = []
        for label, r in results.items():
            passed = r["status"] == 200 and r["median_ms"] <= TARGET_MS
            print(f"{label:30} {r['status']:>6} {r['cold_ms']:8.1f} {r['median_ms']:10.1f} "
                  f"{r['max_ms']:8.1f}{'' if passed else '  MISS'}", file=out)  # fmt: skip
            goals.append({"goal": f"stats {label} <= {TARGET_MS:.0f} ms median",
                          "measured": f"{r['median_ms']} ms (HTTP {r['status']})",
                          "passed": passed})  # fmt: skip
        connections.close_all()
        return {
            "counts": counts,
            "rollup_rows": rollups,
            "build_seconds": round(build_s, 2),
            "refresh_ms": round(refresh_ms, 1),
            "requests": results,
            "goals": goals,
        }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--messages", type=int)
    parser.add_argument("--bounces", type=int)
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--quick", action="store_true", help="20,000 messages, 3 runs each")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    messages = args.messages or (20_000 if args.quick else 1_000_000)
    bounces = args.bounces or (5_000 if args.quick else 100_000)
    repeat = args.repeat or (3 if args.quick else 9)
    result = run(args.admin_url, messages=messages, bounces=bounces, repeat=repeat)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
