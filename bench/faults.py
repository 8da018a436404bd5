"""The fault matrix: ordinary production faults under a steady load, counting every acknowledged
message (each 250's MessageID) against the copies the relay took.

    python -m bench.faults [--quick] [--rows blackhole,relay-421,...] [--json PATH]

Each row runs on PostgreSQL and RabbitMQ of the benchmark's own (a cluster made with initdb and a
RabbitMQ node, both on free loopback ports, so that a row may stop and start them; the machine's
shared servers are never touched), with a database and a virtual host per row, or, for the disk
row, on the default installation (SQLite and the embedded queue in DATA_DIR). The processes are
the product's: the gateway (``runsmtp``, one process) and one worker started by the Procfile's
``worker:`` line (every queue, its embedded beat), each started again 2 s after it exits, as the
deploy/ units' systemd does. They relay to ``bench.fault_sink``, whose answers the row changes.

A row: ``bench.loadgen`` sends ``--rate`` messages a second (AUTH PLAIN, 1.6 KB, one recipient);
after ``--warmup`` seconds the fault begins, and it ends after its duration:

    blackhole   the relay accepts connections and never answers   15 min   (quick 40 s)
    relay-421   the relay answers 421 and closes                  10 min   (quick 20 s)
    relay-451   the relay answers 451 at the end of DATA          10 min   (quick 20 s)
    postgres    PostgreSQL stopped (fast shutdown), then started   30 s down (quick 8 s)
    rabbitmq    RabbitMQ stopped, then started                     30 s down (quick 8 s)
    oom         the worker under a memory cap (a cgroup: its idle use + --oom-headroom-mb) and a
                burst of --oom-burst messages of --oom-message-mb: killed by the kernel's OOM
                killer when a batch needs more; watched for --oom-seconds
    dns         the loopback DNS server answers NXDOMAIN for the verified sending domain during
                one run of the periodic re-check
    disk        the SQLite default's data folder (a tmpfs of --disk-mb) full  10 min (quick 20 s)

The load goes on until the sink is back to the pre-fault rate (at least 80 % of it over 5 s) or
for a minute more; then every acknowledged message must settle (``--drain``). The goal of every
row: 0 lost (acknowledged, neither at the sink nor failed: without a record, or still waiting
when the drain ended), 0 failed (recipient failed or
bounced, submission failed, or a 5xx from the gateway: all of these faults pass), duplicates only
inside one SMTP transaction per connection open at the fault (the sink's connections open when it
began, and when a worker died), and the sink back to full speed within a minute of the fault's
end, by itself.

The full run keeps the product's timeouts; ``--quick`` scales the faults and the timeouts they
play against down together (OUTBOUND_TIMEOUT 60 -> 3 s, the sweep 60 -> 15 s, the first retry
60 -> 5 s), so that each fault lasts about as many timeouts as in the full run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from bench.common import benchmark_parser, django_env, manage, run_benchmark, scratch_dir, step
from bench.fault_rows import RECOVERY_GOAL, ROWS, run_row, title
from bench.fault_servers import PrivatePostgres, PrivateRabbit


class Shared:
    """The private PostgreSQL and RabbitMQ (started when a row needs them), the loopback DNS
    server, and the migrated template database every PostgreSQL row copies."""

    def __init__(self, stack: contextlib.ExitStack, rows: list[str], work: Path):
        from delivery.tests.sinks import DnsServer  # the loopback DNS server of the tests

        self.dns = stack.enter_context(DnsServer({}))
        self.postgres = self.rabbit = None
        self.template = "faults_template"
        if any(ROWS[key].backend == "postgres" for key in rows):
            step("starting a private PostgreSQL cluster and a private RabbitMQ node")
            self.postgres = PrivatePostgres()
            stack.callback(self.postgres.remove)
            self.postgres.start()
            self.rabbit = PrivateRabbit()
            stack.callback(self.rabbit.remove)
            self.rabbit.start()
            url = self.postgres.create_database(self.template)
            manage(django_env(url, work / "data"), "migrate", "--noinput", "--verbosity", "0")


def run(cfg, stack: contextlib.ExitStack) -> dict:
    work = scratch_dir(stack, "faultsbench-")
    if cfg.keep:  # the logs of every process, for a look afterwards
        stack.pop_all()
        stack.callback(step, f"logs kept in {work}")
    result = {"config": {k: v for k, v in vars(cfg).items()}, "rows": {}, "errors": {}}
    shared = Shared(stack, cfg.rows, work)
    for key in cfg.rows:
        started = time.monotonic()
        try:
            if ROWS[key].backend == "sqlite" and os.geteuid() != 0:
                raise RuntimeError("mounting a small tmpfs for the data folder needs root")
            result["rows"][key] = run_row(cfg, ROWS[key], shared, work)
            result["rows"][key]["seconds"] = round(time.monotonic() - started)
        except Exception as exc:
            result["errors"][key] = f"{type(exc).__name__}: {exc}"[-3000:]
            step(f"row {key} failed: {result['errors'][key]}")
        else:
            row = result["rows"][key]
            step(
                f"  {row['acknowledged']:,} acknowledged, {row['lost']} lost, {row['failed']} "
                f"failed, {row['extra_copies']} extra copies; full speed after "
                f"{row['recovered_after']} s"
            )
    result["goals"] = goals(cfg, result)
    return result


def verdicts(row: dict) -> dict[str, bool]:
    recovered = row["recovered_after"]
    return {
        "0 lost": row["lost"] == row["waiting"] == 0 and row["drained_after"] is not None,
        "0 failed": row["failed"] == 0,
        "duplicates within the window": row["extra_copies"] <= row["window"],
        f"full speed <= {RECOVERY_GOAL:.0f} s after": recovered is not None
        and recovered <= RECOVERY_GOAL,
    }


def goals(cfg, result: dict) -> list[dict]:
    entries = []
    for key in cfg.rows:
        goal = f"faults: {title(cfg, ROWS[key])}"
        row = result["rows"].get(key)
        if row is None:
            entries.append(
                {
                    "goal": goal,
                    "passed": False,
                    "measured": "not run",
                    "note": result["errors"].get(key, "")[:200],
                }
            )
            continue
        checks = verdicts(row)
        recovered = row["recovered_after"]
        speed = f"full speed after {recovered:g} s" if recovered is not None else "not at full "
        speed += "" if recovered is not None else f"speed {RECOVERY_GOAL:.0f} s after"
        entries.append(
            {
                "goal": goal,
                "passed": all(checks.values()),
                "measured": f"{row['acknowledged']:,} acked: {row['lost']} lost, "
                + (f"{row['waiting']} still waiting, " if row["waiting"] else "")
                + f"{row['failed']} failed, {row['extra_copies']} dup (window {row['window']}), "
                f"{speed}",
                "note": "; ".join(
                    [f"missed: {name}" for name, ok in checks.items() if not ok] + details(row)
                ),
            }
        )
    return entries


def details(row: dict) -> list[str]:
    found = []
    if row["undelivered_as"]:
        found.append(
            "not delivered: " + ", ".join(f"{n} {s}" for s, n in row["undelivered_as"].items())
        )
    if row["failed_bounces"]:
        found.append("bounces: " + ", ".join(f"{n} {t}" for t, n in row["failed_bounces"].items()))
    if row["refused_for_good"]:
        found.append(f"{row['refused_for_good']} refused with 5xx by the gateway")
    if row["drained_after"] is None:
        found.append("never settled")
    if row["worker_exits"]:
        found.append(f"worker exits {len(row['worker_exits'])}")
    if row["gateway_exits"]:
        found.append(f"gateway exits {len(row['gateway_exits'])}")
    return found


def report(result: dict) -> str:
    cfg = result["config"]
    lines = [
        f"Fault matrix: {cfg['rate']:g} msg/s under each fault; PostgreSQL and RabbitMQ of our own "
        "(the disk row: SQLite default); gateway + the Procfile's worker, both supervised",
        f"  OUTBOUND_TIMEOUT {cfg['outbound_timeout']:g} s, sweep after "
        f"{cfg['sweep_after']:g} s, first retry {cfg['retry_base']:g} s"
        + (" (--quick: scaled down with the faults)" if cfg["quick"] else ""),
        "",
        f"  {'row':<58}{'acked':>7}{'refused':>8}{'lost':>6}{'waiting':>8}{'failed':>7}{'dup':>5}"
        f"{'window':>7}"
        f"{'speed s':>8}{'drain s':>8}",
    ]
    for row in result["rows"].values():
        speed = "-" if row["recovered_after"] is None else f"{row['recovered_after']:g}"
        drained = "-" if row["drained_after"] is None else f"{row['drained_after']:g}"
        lines.append(
            f"  {row['title'][:57]:<58}{row['acknowledged']:>7,}{row['refused']:>8,}"
            f"{row['lost']:>6}{row['waiting']:>8}{row['failed']:>7}{row['extra_copies']:>5}"
            f"{row['window']:>7}"
            f"{speed:>8}{drained:>8}"
        )
        extra = details(row)
        if row.get("cap_method"):
            extra.append(
                f"cap {row['cap_mb']} MB ({row['cap_method']}, idle {row['idle_mb']} "
                f"MB), OOM kills {row['oom_kills']}"
            )
        if row.get("check"):
            extra.append(
                f"the check under NXDOMAIN left dkim_verified={row['check']['dkim_verified']}"
            )
        if row["refusals"]:
            extra.append("refusals " + ", ".join(f"{k} x{n}" for k, n in row["refusals"].items()))
        for text in extra:
            lines.append(f"      {text}")
    for key, error in result["errors"].items():
        lines.append(f"  {key}: crashed: {error[:300]}")
    lines += ["", "goals"]
    for goal in result["goals"]:
        note = f"  [{goal['note']}]" if goal["note"] else ""
        lines.append(
            f"  {'PASS' if goal['passed'] else 'MISS'}  {goal['goal']}: {goal['measured']}{note}"
        )
    return "\n".join(lines)


QUICK = {
    "blackhole_seconds": 40.0,
    "relay_error_seconds": 20.0,
    "restart_seconds": 8.0,
    "disk_seconds": 20.0,
    "oom_seconds": 40.0,
    "outbound_timeout": 3.0,
    "sweep_after": 15.0,
    "sweep_interval": 5.0,
    "retry_base": 5.0,
    "retry_max": 60.0,
    "warmup": 20.0,
    "baseline_window": 10.0,
    "drain": 240.0,
    "drain_poll": 5.0,
}
FULL = {
    "blackhole_seconds": 900.0,
    "relay_error_seconds": 600.0,
    "restart_seconds": 30.0,
    "disk_seconds": 600.0,
    "oom_seconds": 120.0,
    "outbound_timeout": 60.0,
    "sweep_after": 60.0,
    "sweep_interval": 60.0,
    "retry_base": 60.0,
    "retry_max": 4 * 3600.0,
    "warmup": 60.0,
    "baseline_window": 30.0,
    "drain": 1800.0,
    "drain_poll": 15.0,
}


def parse_args(argv=None):
    parser = benchmark_parser("bench.faults", __doc__, "every fault short, timeouts scaled down")
    add = parser.add_argument
    add("--rows", default=",".join(ROWS), help=f"rows, comma separated (of {', '.join(ROWS)})")
    add("--rate", type=float, default=20.0, help="messages per second of the load (default 20)")
    add("--load-concurrency", type=int, default=10, help="load sessions (default 10)")
    for name in FULL:
        add(
            "--" + name.replace("_", "-"),
            type=float,
            help=f"default {FULL[name]:g}, quick {QUICK[name]:g}",
        )
    add("--oom-burst", type=int, default=24, help="large messages in the burst (default 24)")
    add("--oom-message-mb", type=int, default=6, help="their size in MB (default 6)")
    add(
        "--oom-headroom-mb",
        type=int,
        default=250,
        help="the worker's cap: its idle use plus this (default 250)",
    )
    add(
        "--oom-watch",
        action="store_true",
        help="no cgroup: SIGKILL the worker when its RSS passes the cap",
    )
    add("--keep", action="store_true", help="keep the folder of logs (its path is printed)")
    add("--disk-mb", type=int, default=200, help="size of the disk row's tmpfs (default 200)")
    cfg = parser.parse_args(argv)
    for name, value in (QUICK if cfg.quick else FULL).items():
        if getattr(cfg, name) is None:
            setattr(cfg, name, value)
    cfg.rows = [r.strip() for r in cfg.rows.split(",") if r.strip()]
    unknown = [r for r in cfg.rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {unknown}; choose from {list(ROWS)}")
    return cfg


def main(argv=None) -> int:
    cfg = parse_args(argv)
    result = run_benchmark(cfg, run, report)
    if result["errors"]:
        print(f"crashed rows: {sorted(result['errors'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
