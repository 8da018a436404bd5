"""The gateway benchmark's goals (of the gateway issue, and of the fault-isolation issue for the
DATA phase), each checked against the run's figures, and its text report."""

from __future__ import annotations

from bench.common import goal_lines
from bench.gateway_data import MB

# Goals of the gateway issue.
GOAL_RATIO = 1.0
GOAL_P99_MS = 50.0
GOAL_RSS_MB = 150.0
GOAL_CONCURRENCY = 50
GOAL_AS_RUN_RATIO = 0.8  # one gateway process with a worker, against a one-process sink
# Goals of the fault-isolation issue for the DATA phase.
GOAL_DATA_RSS_MB = 32.0
GOAL_ENDLESS_MB = 1000  # "1 GB without CRLF"
GOAL_LINES_MB = 10  # "10 MB of empty lines against 10 MB of 76-character lines"


def goals(result: dict) -> list[dict]:
    """One PASS/MISS entry per goal, with the conditions it was measured under."""
    entries = throughput_goals(result) if result.get("loadgen") else []
    entries += as_run_goals(result) if result.get("as_run") else []
    entries += data_goals(result["data"]) if result.get("data") else []
    return [
        {"goal": goal, "passed": passed, "measured": measured, "note": note}
        for goal, passed, measured, note in entries
    ]


def throughput_goals(result: dict) -> list[tuple]:
    """(goal, passed, measured, note) for the gateway issue's goals."""
    cfg = result["config"]
    gateway = result["loadgen"]["best"]["gateway"]
    conditions = []
    if cfg["database"] != "postgres":
        conditions.append(f"on {cfg['database']}, not PostgreSQL")
    if cfg["concurrency"] != GOAL_CONCURRENCY:
        conditions.append(f"at {cfg['concurrency']} sessions, not {GOAL_CONCURRENCY}")
    note = "; ".join(conditions)
    rss = result["memory"]["rss_with_connections_mb"] if result.get("memory") else None
    connections = result["memory"]["connections"] if result.get("memory") else 0
    entries = [
        (
            f"(a) gateway throughput >= {GOAL_RATIO:.1f}x the sink at {GOAL_CONCURRENCY} sessions,"
            " durable commits on PostgreSQL",
            result["loadgen"]["ratio"] >= GOAL_RATIO,
            f"{result['loadgen']['ratio']:.2f}x",
            note,
        ),
        (
            f"(b) p99 end-of-DATA latency <= {GOAL_P99_MS:.0f} ms at that load",
            gateway["p99_ms"] <= GOAL_P99_MS,
            f"{gateway['p99_ms']:.1f} ms",
            note,
        ),
        (
            f"(c) <= {GOAL_RSS_MB:.0f} MB RSS per gateway process with 1,000 idle connections",
            rss is not None and rss <= GOAL_RSS_MB and connections >= 1000,
            f"{rss} MB with {connections:,}" if rss is not None else "not measured",
            "" if connections >= 1000 else f"only {connections} connections",
        ),
    ]
    return entries


def as_run_goals(result: dict) -> list[tuple]:
    """(goal, passed, measured, note) for the gateway issue's goal as ``make run`` runs it."""
    goal = f"gateway as make run (1 process + worker) >= {GOAL_AS_RUN_RATIO:.1f}x the sink"
    as_run = result["as_run"]
    if as_run.get("skipped"):
        return [(goal, False, "not measured", as_run["skipped"])]
    cfg = result["config"]
    note = [] if cfg["concurrency"] == GOAL_CONCURRENCY else [f"at {cfg['concurrency']} sessions"]
    if not as_run["worker_alive"]:
        note.append("the worker exited")
    ratio = as_run["loadgen"]["ratio"]
    passed = ratio >= GOAL_AS_RUN_RATIO and as_run["worker_alive"]
    return [(goal, passed, f"{ratio:.2f}x", "; ".join(note))]


def data_goals(data: dict) -> list[tuple]:
    """(goal, passed, measured, note) for the DATA phase goals of the fault-isolation issue."""
    gateway, sink = data["gateway"], data["sink"]
    endless, lines = gateway["endless"], gateway["lines"]
    endless_note = []
    if data["endless_bytes"] < GOAL_ENDLESS_MB * MB:
        endless_note.append(f"fed {data['endless_bytes'] // MB:,} MB, not 1 GB")
    if not endless["peak_since_reset"]:
        endless_note.append("peak RSS since the process started")
    lines_note = f"{data['lines_bytes'] // MB} MB, not 10" if data["lines_bytes"] < 10 * MB else ""
    resolution = lines["resolution_s"]
    beside = gateway["beside"]
    p99_limit = max(2 * beside["alone_p99_ms"], beside["alone_p99_ms"] + 10)
    return [
        (
            f"(d) peak RSS growth of a gateway fed 1 GB without CRLF <= {GOAL_DATA_RSS_MB:.0f} MB",
            endless["growth_mb"] <= GOAL_DATA_RSS_MB and endless["reply"].startswith("500"),
            f"{endless['growth_mb']:.1f} MB (sink: {sink['endless']['growth_mb']:,.1f} MB)",
            "; ".join(endless_note),
        ),
        (
            "(e) CPU for 10 MB of empty lines <= CPU for 10 MB of 76-character lines",
            lines["empty_cpu_s"] <= lines["ordinary_cpu_s"] + resolution
            and lines["reply_codes"] == ["250"],
            f"{lines['empty_cpu_s']:.2f} s vs {lines['ordinary_cpu_s']:.2f} s"
            f" (sink: {sink['lines']['empty_cpu_s']:.2f} s vs"
            f" {sink['lines']['ordinary_cpu_s']:.2f} s)",
            "; ".join(
                filter(None, [lines_note, f"x{lines['repeats']}, +-{resolution:.2f} s clock"])
            ),
        ),
        (
            "(f) other sessions' p99 unaffected by clients that never end their DATA",
            beside["beside_p99_ms"] <= p99_limit and not beside["beside_failed"],
            f"{beside['beside_p99_ms']:.1f} ms beside, {beside['alone_p99_ms']:.1f} ms alone"
            f" (sink: {sink['beside']['beside_p99_ms']:.1f} / "
            f"{sink['beside']['alone_p99_ms']:.1f} ms)",
            "within 2x or 10 ms",
        ),
    ]


def report(result: dict) -> str:
    """The human-readable table."""
    lines = throughput_report(result) if result.get("loadgen") else []
    if result.get("as_run"):
        lines += as_run_report(result)
    if result.get("data"):
        lines += data_report(result["data"])
    return "\n".join([*lines, "", *goal_lines(result["goals"])])


def data_report(data: dict) -> list[str]:
    """The DATA phase table: the gateway and the sink side by side."""
    gateway, sink = data["gateway"], data["sink"]
    endless_mb = data["endless_bytes"] // MB
    lines_mb = data["lines_bytes"] // MB
    repeats = gateway["lines"]["repeats"]

    def row(label: str, figure) -> str:
        return f"  {label:<44}{figure(gateway):>18}{figure(sink):>18}"

    return [
        "",
        "DATA phase: one process each, the same inputs (CPU time and VmHWM from /proc)",
        f"  {'':<44}{'gateway':>18}{'aiosmtpd sink':>18}",
        row(f"{endless_mb:,} MB without CRLF: reply", lambda f: f["endless"]["reply"][:16]),
        row("  peak RSS growth", lambda f: f"{f['endless']['growth_mb']:,.1f} MB"),
        row("  seconds (CPU seconds)", lambda f: _seconds(f["endless"])),
        row(f"{lines_mb} MB of empty lines, CPU (x{repeats})", lambda f: _cpu(f, "empty")),
        row(
            f"{lines_mb} MB of 76-character lines, CPU (x{repeats})", lambda f: _cpu(f, "ordinary")
        ),
        row("  empty / 76-character", lambda f: f"{f['lines']['ratio']}x"),
        row("small messages alone: p99", lambda f: f"{f['beside']['alone_p99_ms']:.1f} ms"),
        row("  beside 2 endless DATA: p99", lambda f: f"{f['beside']['beside_p99_ms']:.1f} ms"),
        row("  messages (alone / beside)", _messages),
        row("  failed (alone / beside)", _failed),
        row("  endless DATA sent meanwhile", lambda f: f"{f['beside']['hostile_mb']:,.0f} MB"),
    ]


def _seconds(figures: dict) -> str:
    return f"{figures['seconds']:.1f} ({figures['cpu_seconds']:.1f})"


def _cpu(figures: dict, kind: str) -> str:
    return f"{figures['lines'][kind + '_cpu_s']:.2f} s"


def _messages(figures: dict) -> str:
    return f"{figures['beside']['alone_messages']} / {figures['beside']['beside_messages']}"


def _failed(figures: dict) -> str:
    return f"{figures['beside']['alone_failed']} / {figures['beside']['beside_failed']}"


def loadgen_rows(loadgen: dict, labels: dict) -> list[str]:
    """The better run of each server, every run's rate, and the ratio."""
    lines = []
    for name, label in labels.items():
        best = loadgen["best"][name]
        every = ", ".join(f"{r['messages_per_second']:.0f}" for r in loadgen["runs"][name])
        failed = sum(r["messages_failed"] for r in loadgen["runs"][name])
        lines.append(
            f"  {label:<34}{best['messages_per_second']:>9.1f}{best['p50_ms']:>9.1f}"
            f"{best['p99_ms']:>9.1f}{failed:>8}   {every}"
        )
    return [*lines, f"  {'gateway / sink':<34}{loadgen['ratio']:>8.2f}x"]


def as_run_report(result: dict) -> list[str]:
    """The run as ``make run``: one gateway process with the Procfile's worker, against a sink."""
    as_run, cfg = result["as_run"], result["config"]
    if as_run.get("skipped"):
        return ["", f"as make run: skipped ({as_run['skipped']})"]
    check = as_run["durability"]
    delivered = as_run["delivered_during_runs"]
    delivered = "not counted" if delivered is None else f"{delivered:,}"
    labels = {"sink": "aiosmtpd sink, 1 process", "gateway": "gateway, 1 process + worker"}
    return [
        "",
        f"as make run: `{as_run['worker_command']}` beside one gateway process (PostgreSQL, its "
        f"own RabbitMQ virtual host, Live server relaying to {as_run['relay']}); better of "
        f"{cfg['rounds']} alternating runs after a {cfg['warmup']}-message warm-up",
        f"  {'server':<34}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}   all runs msg/s",
        *loadgen_rows(as_run["loadgen"], labels),
        f"  CPU seconds over the runs: gateway {as_run['cpu_seconds']['gateway']:.1f}, worker "
        f"{as_run['cpu_seconds']['worker']:.1f}; delivered by their end: {delivered} of "
        f"{check['replies_250']:,} accepted",
        f"  durability: {check['rows']:,} rows, {check['replies_250']:,} replies 250, "
        f"{check['loadgen_ids_missing']} acknowledged ids missing"
        f" -> {'PASS' if check['passed'] else 'FAIL'}",
    ]


def throughput_report(result: dict) -> list[str]:
    """The throughput, latency and idle-memory part of the report."""
    cfg = result["config"]
    lines = [
        f"Gateway benchmark: {cfg['messages']:,} messages of {cfg['size']:,} bytes, "
        f"{cfg['concurrency']} sessions, {cfg['processes']} gateway/sink process(es), "
        f"{cfg['database']}, {'STARTTLS' if cfg['starttls'] else 'plain'}, "
        f"{cfg['per_connection']} message(s)/connection, {cfg['loadgen_processes']} loadgen "
        "process(es)",
        "",
        "loadgen (EHLO, AUTH PLAIN), better of "
        f"{cfg['rounds']} alternating runs after a {cfg['warmup']}-message warm-up",
        f"  {'server':<34}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}   all runs msg/s",
    ]
    labels = {"sink": "aiosmtpd sink (bench.sink --auth)", "gateway": "gateway (runsmtp)"}
    lines += loadgen_rows(result["loadgen"], labels)
    if result.get("smtp_source"):
        lines += ["", "smtp-source (HELO, no AUTH; wall-clock)"]
        lines.append(f"  {'server':<34}{'msg/s':>9}{'seconds':>9}")
        source = result["smtp_source"]
        for name, label in (
            ("smtp_sink", "Postfix smtp-sink (C ceiling)"),
            ("sink", "aiosmtpd sink (no AUTH)"),
            ("gateway", "gateway (IP credential)"),
        ):
            row = source[name]
            status = "" if row["ok"] else f"   FAILED: {row['error']}"
            lines.append(
                f"  {label:<34}{row['messages_per_second']:>9.1f}{row['seconds']:>9.2f}{status}"
            )
        if source["sink"]["messages_per_second"]:
            ratio = source["gateway"]["messages_per_second"] / source["sink"]["messages_per_second"]
            lines.append(f"  {'gateway / aiosmtpd sink':<34}{ratio:>8.2f}x")
    else:
        lines += ["", "smtp-source: not installed, skipped"]
    memory = result.get("memory")
    if memory:
        held = f"with {memory['connections']:,} idle connections"
        lines += [
            "",
            "memory (VmRSS)",
            f"  {'one-process gateway, idle':<34}{memory['rss_before_mb']:>9.1f} MB",
            f"  {held:<34}{memory['rss_with_connections_mb']:>9.1f} MB"
            f"  ({memory['kb_per_connection']:.1f} KB per connection)",
        ]
    after = result.get("rss_after_load_mb", {})
    if after:
        figures = ", ".join(f"pid {pid}: {mb:.1f} MB" for pid, mb in after.items())
        lines.append(f"  loaded gateway processes after the runs: {figures}")
    check = result["durability"]
    lines += [
        "",
        f"durability: {check['rows']:,} rows in {check['table']}, {check['replies_250']:,} "
        f"replies 250, {check['loadgen_ids_missing']} acknowledged ids missing"
        f" -> {'PASS' if check['passed'] else 'FAIL'}",
    ]
    return lines
