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

# Here: the orchestration and the command line. The workload's scripts are in
# bench.pipeline_scripts, what the sections share in bench.pipeline_infra, the sections in
# bench.pipeline_sections, the goals and the report in bench.pipeline_report.

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from bench.common import (
    benchmark_parser,
    gateway_env,
    manage,
    model_tables,
    prepare_vhost,
    raise_fd_limit,
    reachable,
    run_benchmark,
    scratch_dir,
    step,
    throwaway_database,
)
from bench.pipeline_infra import TABLES, Db
from bench.pipeline_report import GOAL_RSS_MESSAGES, goals, report
from bench.pipeline_sections import (
    delivery,
    end_to_end,
    kill_run,
    processing,
    versus_postfix,
    worker_rss,
)


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
