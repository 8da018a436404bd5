"""The pipeline benchmark's goals (those of the issue, each checked against the run's figures) and
its text report, one paragraph per section."""

from __future__ import annotations

from bench.common import goal_lines

# Goals of the issue.
GOAL_PROCESSING = 1000.0  # messages/s, one worker process
GOAL_PROCESSING_CPU_MS = 1.0  # CPU of the worker process per message
# CPU of the worker process per recipient delivered: 1 ms plus the DKIM signature (RSA 2048,
# about 0.5 ms: ``python -m bench.dkim``).
GOAL_DELIVERY_CPU_MS = 1.5
GOAL_E2E = 300.0  # messages/s, SMTP accept -> relayed, two worker processes
GOAL_VS_POSTFIX = 0.5  # end to end / Postfix, the same smtp-source load, the same sink
GOAL_AS_RUN_VS_POSTFIX = 0.3  # the same, with the worker as ``make run`` starts it
GOAL_WORKER_RSS_MB = 300.0  # the Procfile's worker, through GOAL_RSS_MESSAGES
GOAL_RSS_MESSAGES = 100_000


def goals(result: dict) -> list[dict]:
    entries = []
    if "processing" in result:
        p = result["processing"]
        best = p["runs"][p["best"]]
        entries.append({
            "goal": f"processing >= {GOAL_PROCESSING:.0f} messages/s with one worker process",
            "passed": best["messages_per_second"] >= GOAL_PROCESSING and best["completed"],
            "measured": f"{best['messages_per_second']:.0f}/s ({p['best']}); direct call "
                        f"{p['direct']['messages_per_second']:.0f}/s",
            "note": "" if best["completed"] else "did not complete",
        })  # fmt: skip
        entries.append({
            "goal": f"processing <= {GOAL_PROCESSING_CPU_MS:g} ms of CPU per message "
                    "(worker process)",
            "passed": best["cpu_ms_per_message"] <= GOAL_PROCESSING_CPU_MS and best["completed"],
            "measured": f"{best['cpu_ms_per_message']:.2f} ms ({p['best']})",
            "note": "",
        })  # fmt: skip
    if "e2e" in result:
        e = result["e2e"]
        entries.append({
            "goal": f"end to end (SMTP accept -> relayed) >= {GOAL_E2E:.0f} messages/s, "
                    "two worker processes",
            "passed": e["messages_per_second"] >= GOAL_E2E and e["completed"],
            "measured": f"{e['messages_per_second']:.0f}/s; gateway alone "
                        f"{e['gateway_alone']['messages_per_second']:.0f}/s",
            "note": "" if e["workers"] == 2 else f"{e['workers']} worker(s)",
        })  # fmt: skip
    if "delivery" in result:
        d = result["delivery"]
        entries.append({
            "goal": f"delivery <= {GOAL_DELIVERY_CPU_MS:g} ms of CPU per recipient, DKIM-signed "
                    "(worker process)",
            "passed": d["completed"] and d["cpu_ms_per_recipient"] <= GOAL_DELIVERY_CPU_MS,
            "measured": f"{d['cpu_ms_per_recipient']:.2f} ms; {d['messages_per_second']:.0f} "
                        f"recipients/s ({d['pool']})",
            "note": "" if d["completed"] else f"{d['counted_at_sink']} counted",
        })  # fmt: skip
    if "postfix" in result:
        p = result["postfix"]
        for label, goal in (("scaled", GOAL_VS_POSTFIX), ("as make run", GOAL_AS_RUN_VS_POSTFIX)):
            run = p[label]
            entries.append({
                "goal": f"versus Postfix: end to end ({label}: {run['workers']}) >= {goal}x "
                        "Postfix, the same smtp-source load, counted at smtp-sink",
                "passed": run["completed"] and run["ratio_to_postfix"] >= goal,
                "measured": f"{run['messages_per_second']:.0f}/s vs Postfix "
                            f"{p['postfix']['messages_per_second']:.0f}/s: "
                            f"{run['ratio_to_postfix']:.2f}x",
                "note": "" if run["completed"] else f"{run['counted_at_sink']} counted",
            })  # fmt: skip
    if "kill" in result:
        k = result["kill"]
        entries.append({
            "goal": "run with random worker kills: none lost, duplicates only in the "
                    "at-least-once window (one transaction per connection open at a kill)",
            "passed": k["lossless_within_window"],
            "measured": f"{k['delivered_once']:,}/{k['accepted']:,} once, {k['missing']} "
                        f"missing, {k['extra_copies']} extra copies (window: "
                        f"{k['window']}), {k['kills']} kills",
            "note": "" if k["messages"] >= 10_000 else f"{k['messages']:,} messages, not 10,000",
        })  # fmt: skip
    if "rss" in result:
        r = result["rss"]
        # The larger of the sampled peak and the sum of VmHWM: a spike between two samples counts.
        peak = max(r["peak_mb"], r["high_water_mb"])
        note = [] if r["completed"] else [f"{r['counted_at_sink']:,} counted"]
        if r["messages"] < GOAL_RSS_MESSAGES:
            note.append(f"{r['messages']:,} messages, not {GOAL_RSS_MESSAGES:,}")
        entries.append({
            "goal": f"worker RSS < {GOAL_WORKER_RSS_MB:.0f} MB through a "
                    f"{GOAL_RSS_MESSAGES:,}-message run",
            "passed": r["completed"] and r["messages"] >= GOAL_RSS_MESSAGES
                      and peak < GOAL_WORKER_RSS_MB,
            "measured": f"peak {peak:.0f} MB, final {r['final_mb']:.0f} MB (first "
                        f"{r['first_mb']:.0f} MB); {r['counted_at_sink']:,}/{r['messages']:,} "
                        "delivered",
            "note": "; ".join(note),
        })  # fmt: skip
    return entries


def _cpu_lines(run: dict) -> list[str]:
    cpu = run.get("cpu_ms_per_message") or {}
    if not cpu:
        return []
    roles = ", ".join(f"{k} {v}" for k, v in cpu.items() if k != "machine busy %")
    return [f"    CPU ms per message: {roles}; machine busy {cpu['machine busy %']} %"]


def report(result: dict) -> str:
    cfg = result["config"]
    lines = [f"Processing and delivery benchmark ({cfg['messages']:,} messages per run, "
             "PostgreSQL, RabbitMQ)"]  # fmt: skip
    if "processing" in result:
        p = result["processing"]
        fill = p["fill"]
        lines += [
            "",
            f"(a) processing, one worker process, -Q processing (mean message "
            f"{fill['mean_size']:,} bytes; mix {fill['kinds']})",
            f"  {'run':<40}{'msg/s':>9}{'seconds':>9}{'CPU ms/msg':>12}",
        ]
        for label, run in p["runs"].items():
            lines.append(f"  {'worker --pool ' + label:<40}{run['messages_per_second']:>9.1f}"
                         f"{run['seconds']:>9.2f}{run['cpu_ms_per_message']:>12.3f}")  # fmt: skip
        d = p["direct"]
        lines.append(f"  {'baseline: process_submission, no broker':<40}"
                     f"{d['messages_per_second']:>9.1f}{d['seconds']:>9.2f}")  # fmt: skip
        lines.append(f"  {'best worker / direct':<40}{p['ratio_to_direct']:>8.2f}x")
        lines.append(f"  submissions: {p['statuses']}; SMTPApiError bounces: {p['bounces']}")
    if "e2e" in result:
        e = result["e2e"]
        lines += [
            "",
            f"(b) end to end: loadgen -> gateway (1 process) -> {e['workers']} worker(s) "
            f"(--pool {e['pool']}) -> {e['sink']}",
            f"  delivered {e['delivered']:,}/{e['accepted']:,} in {e['seconds']:.2f} s "
            f"(first accept -> last delivered): {e['messages_per_second']:.1f} msg/s",
            f"  gateway accept rate during the run: "
            f"{e['accept_with_workers']['messages_per_second']:.1f} msg/s; "
            f"gateway alone (workers stopped): {e['gateway_alone']['messages_per_second']:.1f}"
            f" msg/s; end to end / gateway alone: {e['ratio_to_gateway_alone']:.2f}x",
        ]
    if "kill" in result:
        k = result["kill"]
        lines += [
            "",
            f"(c) kill run: {k['accepted']:,} accepted, {k['kills']} SIGKILLs in {k['seconds']} s;"
            f" at the sink: {k['delivered_once']:,} once, {k['missing']} missing, "
            f"{k['duplicated']} duplicated ({k['extra_copies']} extra copies)",
            f"  recipients: {k['recipient_statuses']}",
        ]
    if "postfix" in result:
        p = result["postfix"]
        lines += ["", f"(d) versus Postfix: smtp-source -s {result['config']['load_concurrency']} "
                      f"-m {p['messages']:,} -l 2048, counted at smtp-sink "
                      "(first message sent -> last counted)",
                  f"  {'Postfix (private instance, relayhost smtp-sink)':<52}"
                  f"{p['postfix']['messages_per_second']:>9.1f} msg/s"]  # fmt: skip
        lines += _cpu_lines(p["postfix"])
        for label in ("scaled", "as make run"):
            run = p[label]
            lines.append(f"  {'pipeline, ' + label + ': ' + run['workers']:<52}"
                         f"{run['messages_per_second']:>9.1f} msg/s  "
                         f"{run['ratio_to_postfix']:.2f}x")  # fmt: skip
            lines += _cpu_lines(run)
    if "delivery" in result:
        d = result["delivery"]
        lines += ["", f"(e) delivery, one worker process (-Q delivery, --pool {d['pool']}) -> "
                      "smtp-sink, every message DKIM-signed",
                  f"  {d['counted_at_sink']:,}/{d['messages']:,} counted in {d['seconds']:.2f} s:"
                  f" {d['messages_per_second']:.1f} recipients/s, "
                  f"{d['cpu_ms_per_recipient']:.3f} ms CPU per recipient"]  # fmt: skip
    if "rss" in result:
        lines += rss_report(result["rss"])
    lines += ["", *goal_lines(result["goals"])]
    return "\n".join(lines)


def rss_report(r: dict) -> list[str]:
    """(f): the worker's memory through the long run, summed over it and its children."""
    lines = [
        "",
        f"(f) worker RSS: {r['messages']:,} messages, loadgen -> gateway (1 process) -> "
        f"`{r['worker_command']}` -> smtp-sink, in chunks of {r['chunk']:,}",
        f"  {r['counted_at_sink']:,} counted at the sink, {r['delivered']:,} delivered, in "
        f"{r['seconds']:.0f} s ({r['messages_per_second']:.1f} msg/s); "
        f"{r['accept_failures']} accept failures",
        f"  {'VmRSS, MB':<40}{'first':>9}{'peak':>9}{'final':>9}{'VmHWM':>9}",
        f"  {'worker and children (sum)':<40}{r['first_mb']:>9.1f}{r['peak_mb']:>9.1f}"
        f"{r['final_mb']:>9.1f}{r['high_water_mb']:>9.1f}",
    ]
    for pid, p in r["by_process"].items():
        label = f"pid {pid}" + (" (worker)" if int(pid) == r["worker_pid"] else " (child)")
        final = "-" if p["final_mb"] is None else f"{p['final_mb']:.1f}"
        hwm = "-" if p["high_water_mb"] is None else f"{p['high_water_mb']:.1f}"
        lines.append(f"  {label:<40}{p['first_mb']:>9.1f}{p['peak_mb']:>9.1f}{final:>9}{hwm:>9}")
    gateway = r["gateway_mb"]
    lines.append(
        f"  gateway at the end: {gateway['final']:.1f} MB, VmHWM {gateway['high_water']:.1f} MB"
    )
    return lines
