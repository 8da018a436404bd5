"""The rows of the fault matrix: what each fault does (``inject``), and one row's run from start
to end (:func:`run_row`): its own database and broker (or its own SQLite data folder), the relay
sink, the gateway and the Procfile's worker (both supervised), a steady load, the fault, the
watch for recovery, the drain and the count."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    GATEWAY_SETTINGS,
    RUNSMTP,
    django_env,
    free_port,
    manage,
    procfile_command,
    start,
    step,
)
from bench.common import django_script as script
from bench.fault_infra import MemoryCap, PacedLoad, Supervised, Tmpfs, read_acknowledged
from bench.fault_scripts import CLASSIFY, RECHECK, SETUP, VERIFY
from bench.fault_sink import read_log, set_mode

SENDER_DOMAIN = "app.faults.test"
DNS_DOMAIN = "dns.faults.test"  # the DNS row's: verified through the loopback DNS server
RELAY_NAME = "relay.faults.test"  # the DNS row's relay, by name
RECIPIENT = "user@example.net"
LOAD_HEADERS = ("X-PM-Tag: faults", "X-PM-TrackOpens: false")
RECOVERY_WINDOW = 5.0  # seconds of sink counts that must reach the pre-fault rate
RECOVERY_SHARE = 0.8  # ... at least this share of it
RECOVERY_GOAL = 60.0  # seconds after the fault's end


@dataclass
class Row:
    key: str
    title: str  # with {duration}
    inject: object  # inject(ctx) -> None: the fault, from its start to its end
    backend: str = "postgres"  # or "sqlite": the default installation (DATA_DIR only)
    duration: str = ""  # the cfg attribute holding the fault's seconds


@dataclass
class Context:
    cfg: object
    row: Row
    work: Path
    env: dict
    shared: object  # bench.faults.Shared: the private PostgreSQL and RabbitMQ, the DNS server
    control: Path = None
    sink_log: Path = None
    ids_file: Path = None
    gateway: Supervised = None
    worker: Supervised = None
    gateway_port: int = 0
    creds: dict = None
    cap: MemoryCap | None = None
    tmpfs: Tmpfs | None = None
    records: list = field(default_factory=list)
    fault_start: float = 0.0
    fault_end: float = 0.0
    window_moments: list = field(default_factory=list)  # times whose open connections count
    figures: dict = field(default_factory=dict)

    def begin(self) -> None:
        self.fault_start = time.time()
        self.window_moments.append(self.fault_start)
        step(f"  fault: {self.row.key} begins")

    def end(self) -> None:
        self.fault_end = time.time()
        step(f"  fault: {self.row.key} ends after {self.fault_end - self.fault_start:.0f} s")


# --- the faults ---------------------------------------------------------------------------------


def relay_mode(mode: str):
    """The relay blackholes or answers 421 / 451 for the row's duration, then is itself again."""

    def inject(ctx: Context) -> None:
        ctx.begin()
        set_mode(ctx.control, mode)
        time.sleep(getattr(ctx.cfg, ctx.row.duration))
        set_mode(ctx.control, "ok")
        ctx.end()

    return inject


def restart_postgres(ctx: Context) -> None:
    ctx.begin()
    ctx.shared.postgres.stop()
    time.sleep(ctx.cfg.restart_seconds)
    ctx.shared.postgres.start()
    ctx.end()


def restart_rabbitmq(ctx: Context) -> None:
    ctx.begin()
    ctx.shared.rabbit.stop()
    time.sleep(ctx.cfg.restart_seconds)
    ctx.shared.rabbit.start()
    ctx.end()


def out_of_memory(ctx: Context) -> None:
    """A memory cap on the worker (its idle use plus ``--oom-headroom-mb``), then a burst of
    large messages beside the steady load: the worker is killed by the OOM killer if a batch
    needs more than the cap. Supervised, it is started again 2 s after each death."""
    cfg, cap = ctx.cfg, ctx.cap
    idle = cap.usage()
    cap.set_limit(idle + cfg.oom_headroom_mb * 1024 * 1024)
    ctx.figures.update(
        cap_method=cap.method, idle_mb=round(idle / 2**20), cap_mb=round(cap.limit / 2**20)
    )
    ctx.begin()
    burst = PacedLoad(
        ctx.ids_file,
        rate=None,
        concurrency=cfg.oom_burst,
        messages=cfg.oom_burst,
        size=cfg.oom_message_mb * 1024 * 1024,
        **load_options(ctx),
    ).start()
    burst_result = burst.wait(timeout=300)
    time.sleep(max(0.0, ctx.fault_start + cfg.oom_seconds - time.time()))
    ctx.end()
    ctx.figures["burst"] = {k: burst_result[k] for k in ("messages_ok", "messages_failed")}
    ctx.figures["oom_kills_in_fault"] = cap.oom_kills()


def dns_flap(ctx: Context) -> None:
    """The loopback DNS server answers NXDOMAIN for the verified domain's names during one run
    of the periodic re-check; then its records are back."""
    dns = ctx.shared.dns
    ctx.begin()
    for name, rtype, _ in ctx.records:
        dns.remove(name, rtype)
    env = {**ctx.env, "DOMAIN_RECHECK_SECONDS": "0"}
    ctx.figures["check"] = script(env, RECHECK, json.dumps({"domain": DNS_DOMAIN}))
    for name, rtype, value in ctx.records:
        dns.set(name, rtype, [value])
    ctx.end()


def disk_full(ctx: Context) -> None:
    ctx.begin()
    ctx.tmpfs.fill()
    ctx.figures["free_mb_when_full"] = round(ctx.tmpfs.free_mb(), 2)
    time.sleep(ctx.cfg.disk_seconds)
    ctx.tmpfs.unfill()
    ctx.end()


ROWS = {
    row.key: row
    for row in (
        Row(
            "blackhole",
            "relay blackholed for {duration}, then back",
            relay_mode("blackhole"),
            duration="blackhole_seconds",
        ),
        Row(
            "relay-421",
            "relay answering 421 for {duration}",
            relay_mode("421"),
            duration="relay_error_seconds",
        ),
        Row(
            "relay-451",
            "relay answering 451 (end of DATA) for {duration}",
            relay_mode("451"),
            duration="relay_error_seconds",
        ),
        Row(
            "postgres",
            "PostgreSQL restarted mid-run ({duration} down)",
            restart_postgres,
            duration="restart_seconds",
        ),
        Row(
            "rabbitmq",
            "RabbitMQ restarted mid-run ({duration} down)",
            restart_rabbitmq,
            duration="restart_seconds",
        ),
        Row(
            "oom",
            "worker killed by the OOM killer mid-batch (memory cap)",
            out_of_memory,
            duration="oom_seconds",
        ),
        Row("dns", "DNS: NXDOMAIN for a verified domain during one check", dns_flap),
        Row(
            "disk",
            "disk full on the SQLite default for {duration}",
            disk_full,
            backend="sqlite",
            duration="disk_seconds",
        ),
    )
}


def describe(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


def title(cfg, row: Row) -> str:
    duration = describe(getattr(cfg, row.duration)) if row.duration else ""
    return row.title.format(duration=duration)


# --- one row ------------------------------------------------------------------------------------


def load_options(ctx: Context) -> dict:
    sender = f"app@{DNS_DOMAIN if ctx.row.key == 'dns' else SENDER_DOMAIN}"
    return dict(
        host="127.0.0.1",
        port=ctx.gateway_port,
        user=ctx.creds["user"],
        password=ctx.creds["password"],
        sender=sender,
        to=RECIPIENT,
        headers=LOAD_HEADERS,
        timeout=60.0,
    )


def row_env(cfg, row: Row, shared, work: Path, sink_port: int, stack) -> tuple[dict, Tmpfs | None]:
    """The environment of the row's processes: the product's settings as in production, but for
    the time scale (``--quick``) and the relay; PostgreSQL and RabbitMQ of the row's own, or the
    SQLite default (no DATABASE_URL, no broker) in a small tmpfs."""
    data = work / "data"
    settings = {
        **GATEWAY_SETTINGS,
        "OUTBOUND_SMTP_RELAY": f"smtp://127.0.0.1:{sink_port}?starttls=never",
        "OUTBOUND_TIMEOUT": cfg.outbound_timeout,
        "SWEEP_AFTER_SECONDS": cfg.sweep_after,
        "SWEEP_INTERVAL_SECONDS": cfg.sweep_interval,
        "DELIVERY_RETRY_BASE": cfg.retry_base,
        "DELIVERY_RETRY_MAX": cfg.retry_max,
        "BOUNCE_DOMAIN": "bounces.faults.test",
    }
    if row.key == "dns":
        # The domain's checks ask the loopback DNS server, and so does delivery: the relay goes
        # by a name it publishes, so that a DNS fault reaches delivery's look-ups too.
        shared.dns.set(RELAY_NAME, "A", ["127.0.0.1"])
        settings.update(
            OUTBOUND_DNS_SERVERS=f"127.0.0.1:{shared.dns.port}",
            DNS_VERIFY_TIMEOUT=2,
            OUTBOUND_SMTP_RELAY=f"smtp://{RELAY_NAME}:{sink_port}?starttls=never",
        )
    tmpfs = None
    if row.backend == "sqlite":
        tmpfs = Tmpfs(data, cfg.disk_mb)
        stack.callback(tmpfs.remove)
        env = django_env(None, data, **settings)
        env.pop("DATABASE_URL", None)
        env.pop("CELERY_BROKER_URL", None)
        manage(env, "migrate", "--noinput", "--verbosity", "0")
    else:
        data.mkdir()
        name = f"row_{row.key.replace('-', '_')}"
        url = shared.postgres.create_database(name, template=shared.template)
        broker = shared.rabbit.add_vhost(name)
        env = django_env(url, data, CELERY_BROKER_URL=broker, **settings)
    return env, tmpfs


def run_row(cfg, row: Row, shared, base: Path) -> dict:
    work = base / row.key
    work.mkdir()
    with contextlib.ExitStack() as stack:
        step(f"row {row.key}: {title(cfg, row)}")
        sink_port = free_port()
        env, tmpfs = row_env(cfg, row, shared, work, sink_port, stack)
        ctx = Context(cfg, row, work, env, shared, tmpfs=tmpfs)
        ctx.control, ctx.sink_log, ctx.ids_file = work / "mode", work / "sink.log", work / "ids"
        ctx.control.write_text("ok")
        sink = start(
            stack,
            "sink",
            [
                sys.executable,
                "-m",
                "bench.fault_sink",
                "--port",
                str(sink_port),
                "--log",
                str(ctx.sink_log),
                "--control",
                str(ctx.control),
            ],
            dict(os.environ),
            work,
        )
        sink.wait_for("sink ready", timeout=30)
        setup = {"name": f"faults {row.key}", "domain": SENDER_DOMAIN}
        if row.key == "dns":
            setup.update(domain=DNS_DOMAIN, dns=True)
        ctx.creds = script(env, SETUP, json.dumps(setup))
        if row.key == "dns":
            ctx.records = ctx.creds["records"]
            for name, rtype, value in ctx.records:
                shared.dns.set(name, rtype, [value])
            stack.callback(lambda: [shared.dns.remove(n, t) for n, t, _ in ctx.records])
            verified = script(env, VERIFY, json.dumps({"domain": DNS_DOMAIN}))
            if not verified["dkim_verified"]:
                raise RuntimeError(f"the DNS row's domain did not verify: {verified}")
        ctx.gateway_port = free_port()
        ctx.gateway = Supervised(
            "gateway",
            [
                sys.executable,
                "-c",
                RUNSMTP,
                "--processes",
                "1",
                "--listen",
                f"transactional=127.0.0.1:{ctx.gateway_port}",
            ],
            env,
            work,
            "SMTP gateway ready",
        )
        stack.callback(ctx.gateway.stop)
        ctx.gateway.start()
        if row.key == "oom":
            ctx.cap = MemoryCap(f"faults-{os.getpid()}", force_watch=cfg.oom_watch)
            stack.callback(ctx.cap.remove)
        ctx.worker = Supervised(
            "worker", procfile_command("worker"), env, work, " ready.", cap=ctx.cap
        )
        stack.callback(ctx.worker.stop)
        ctx.worker.start()
        return observe(cfg, ctx)


def observe(cfg, ctx: Context) -> dict:
    """The steady load, the fault, the watch for recovery, the drain; then the figures."""
    load = PacedLoad(
        ctx.ids_file,
        rate=cfg.rate,
        concurrency=cfg.load_concurrency,
        size=1600,
        **load_options(ctx),
    ).start()
    load_started = time.time()
    try:
        time.sleep(cfg.warmup)
        ctx.row.inject(ctx)
        baseline_from = max(load_started + 5.0, ctx.fault_start - cfg.baseline_window)
        baseline = read_log(ctx.sink_log).count_between(baseline_from, ctx.fault_start) / max(
            ctx.fault_start - baseline_from, 1.0
        )
        recovered = watch_recovery(ctx, baseline)
    finally:
        accept = load.stop()
    step(
        f"  load stopped: {accept['messages_ok']:,} acknowledged, "
        f"{accept['messages_failed']:,} refused; draining"
    )
    drained, states = drain(cfg, ctx)
    return figures(cfg, ctx, accept, baseline, recovered, drained, states)


def watch_recovery(ctx: Context, baseline: float) -> float | None:
    """Seconds from the fault's end until the sink takes, over RECOVERY_WINDOW seconds, at
    least RECOVERY_SHARE of the pre-fault rate; None if not within RECOVERY_GOAL."""
    if baseline <= 0:
        return None  # nothing flowed before the fault: no speed to get back to
    wanted = RECOVERY_SHARE * baseline * RECOVERY_WINDOW
    last = ctx.fault_end + RECOVERY_GOAL
    while True:
        now = time.time()
        log = read_log(ctx.sink_log)
        moment = ctx.fault_end
        while moment + RECOVERY_WINDOW <= min(now, last + RECOVERY_WINDOW):
            if log.count_between(moment, moment + RECOVERY_WINDOW) >= wanted:
                return round(moment - ctx.fault_end, 1)
            moment += 0.5
        if now > last + RECOVERY_WINDOW:
            return None
        time.sleep(1.0)


def drain(cfg, ctx: Context) -> tuple[float | None, dict]:
    """Wait until every acknowledged message is at the sink and settled in the database
    (delivered, failed or bounced), or ``--drain`` seconds; returns (seconds from the fault's
    end, or None when it never settled; the last classification)."""
    deadline = time.time() + cfg.drain
    while True:
        # (A recipient recorded delivered is at the sink: the sink logs before its 250.)
        states = script(ctx.env, CLASSIFY, str(ctx.ids_file))
        if not any(state not in SETTLED for state in states["states"].values()):
            return round(time.time() - ctx.fault_end, 1), states
        if time.time() > deadline:
            return None, states
        time.sleep(cfg.drain_poll)


# What a message not delivered may end as: failed (``FAILED``), or with no record at all.
FAILED = ("recipient failed", "recipient bounced", "submission failed", "submission rejected")
SETTLED = (*FAILED, "no record")


def figures(cfg, ctx: Context, accept: dict, baseline: float, recovered, drained, states) -> dict:
    """Every acknowledged MessageID (the 250s) against the copies at the sink and the
    database's last word."""
    acked = read_acknowledged(ctx.ids_file)
    log = read_log(ctx.sink_log)
    copies = log.copies
    failed = {i for i in acked if states["states"].get(i) in FAILED}
    undelivered = {i for i in acked if i not in copies and i not in failed}
    # Still on its way when the drain ended (pending, deferred, sending, not processed), or lost:
    # no record at all, or recorded delivered without a copy at the sink.
    waiting = {i for i in undelivered if states["states"].get(i, "no record") not in SETTLED}
    lost = undelivered - waiting
    undelivered_as = Counter(
        states["states"].get(i, "delivered, not at the sink") for i in undelivered
    )
    # A 5xx from the gateway for a passing fault is a failure the sender will not retry.
    refused_for_good = sum(n for kind, n in accept["errors"].items() if re.search(r" 5\d\d$", kind))
    return {
        "row": ctx.row.key,
        "title": title(cfg, ctx.row),
        "backend": ctx.row.backend,
        "fault_seconds": round(ctx.fault_end - ctx.fault_start, 1),
        "acknowledged": len(acked),
        "refused": accept["messages_failed"],
        "refusals": accept["errors"],
        "refused_for_good": refused_for_good,
        "at_sink": sum(1 for i in acked if i in copies),
        "lost": len(lost),
        "waiting": len(waiting),
        "undelivered_as": dict(undelivered_as),
        "failed": len(failed) + refused_for_good,
        "failed_bounces": dict(Counter(t for i in failed for t in states["bounces"].get(i, []))),
        "duplicated": sum(1 for i in acked if copies.get(i, 0) > 1),
        "extra_copies": sum(copies[i] - 1 for i in acked if copies.get(i, 0) > 1),
        # Connections open when the fault began, and in the second before each worker exit (the
        # supervisor sees an exit within 0.1 s; the kernel has closed its connections by then).
        "window": sum(log.open_at(moment) for moment in ctx.window_moments)
        + sum(log.open_at(when, before=1.0) for when, _ in ctx.worker.exits),
        "not_acknowledged_at_sink": sum(1 for i in copies if i not in acked),
        "baseline_per_second": round(baseline, 1),
        "recovered_after": recovered,
        "drained_after": drained,
        "worker_exits": [[round(t - ctx.fault_start, 1), code] for t, code in ctx.worker.exits],
        "gateway_exits": [[round(t - ctx.fault_start, 1), code] for t, code in ctx.gateway.exits],
        "oom_kills": ctx.cap.oom_kills() if ctx.cap else None,
        **ctx.figures,
    }
