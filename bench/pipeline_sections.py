"""The pipeline benchmark's sections, each a function ``(cfg, stack, env, broker, db, work) ->
dict`` that ``bench.pipeline`` runs on a database and RabbitMQ virtual host of its own:
(a) processing, (b) end to end, (c) the kill run, (d) versus Postfix, (e) delivery and (f) the
worker's RSS (with :class:`RssSampler`). ``bench.pipeline``'s docstring describes what each
measures."""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from bench.common import (
    CELERY,
    CpuMeter,
    cpu_seconds,
    free_port,
    proc_status_mb,
    process_tree,
    procfile_command,
    procfile_line,
    start,
    step,
)
from bench.common import django_script as script
from bench.common import start_gateway as start_runsmtp
from bench.pipeline_infra import (
    RECIPIENT,
    SENDER,
    Workers,
    load,
    purge,
    relay_env,
    start_gateway,
    start_sink,
    wait_until,
)
from bench.pipeline_scripts import (
    DELIVERY_FILL,
    DIRECT,
    FILL,
    PUBLISH,
    PUBLISH_DELIVERY,
    SETUP,
    SETUP_FOR_SOURCE,
)
from bench.postfix import CountingSink, postfix_baseline, relay_through
from bounces.verp import VERP_ADDRESS_RE, message_id_in

RSS_CHUNK = 2000  # messages per load of the rss section (fewer when the run is small)


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
    for line in sink_log.read_text().splitlines() if sink_log.exists() else []:
        match = VERP_ADDRESS_RE.search(line)
        if match:
            sent[message_id_in(match)] += 1
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
