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

# Here: the orchestration and the command line. Steps 1 to 7 are in bench.gateway_steps, the DATA
# phase (step 8) in bench.gateway_data, the goals and the report in bench.gateway_report.

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from bench.common import (
    benchmark_parser,
    find_tool,
    free_port,
    gateway_env,
    model_tables,
    raise_fd_limit,
    reachable,
    run_benchmark,
    scratch_dir,
    start_gateway,
    start_smtp_sink,
    step,
)
from bench.gateway_data import data_phase
from bench.gateway_report import GOAL_CONCURRENCY, GOAL_ENDLESS_MB, GOAL_LINES_MB, goals, report
from bench.gateway_steps import (
    as_make_run,
    as_run_database,
    as_run_skipped,
    compare,
    durability,
    idle_memory,
    prepare_database,
    provision,
    rss_mb,
    smtp_source,
    start_sink,
)


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
