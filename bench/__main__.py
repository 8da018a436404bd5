"""Every benchmark of the project, one after the other, with one summary of every goal.

    python -m bench [--quick] [--only SECTION,SECTION,...]   (default: every section below)

Each section runs as its own subprocess (its own throwaway database, processes and clean-up):

    gateway     python -m bench.gateway           the SMTP gateway against a bare aiosmtpd sink:
                                                  throughput, latency, memory, and the DATA
                                                  phase fed the same hostile inputs
    processing  python -m bench.pipeline --only processing
    delivery    python -m bench.pipeline --only delivery
    e2e         python -m bench.pipeline --only e2e
    postfix     python -m bench.pipeline --only postfix   the same smtp-source load through a
                                                  private Postfix and through the pipeline,
                                                  counted at smtp-sink
    kill        python -m bench.pipeline --only kill
    rss         python -m bench.pipeline --only rss       the Procfile's worker through 100,000
                                                  messages: its RSS, sampled every second
    api         python -m bench.bounce_api        the bounce API over 1,000,000 bounces
    sendapi     python -m bench.send_api          POST /email/batch under gunicorn against the
                                                  SMTP gateway's accept rate
    messages    python -m bench.messages_api      the Messages API over 1,000,000 messages
    webhooks    python -m bench.webhooks          one worker posting webhooks
    admin       python -m bench.dashboard         the admin pages over 1,000,000 messages
    stats       python -m bench.stats             the stats API over 1,000,000 messages (daily
                                                  roll-ups)
    dkim        python -m bench.dkim              CPU per message of DKIM signing (RSA 2048,
                                                  Ed25519, both) against an unsigned run
    templates   python -m bench.templates         CPU per message of rendering a 20 KB template
                                                  with a layout and inlining its CSS
    inbound     python -m bench.inbound           the inbound MX: accept-to-webhook throughput
                                                  (against a bare aiosmtpd sink) and parse CPU
                                                  per message over the inbound corpus
    faults      python -m bench.faults            the fault matrix: relay blackholed, 421, 451,
                                                  PostgreSQL and RabbitMQ restarted (private
                                                  ones), the worker OOM-killed, a DNS flap, a
                                                  full disk; each under load, every acknowledged
                                                  message counted at the relay (about 2 hours;
                                                  --quick about 15 minutes)

(processing, delivery, e2e, postfix, kill and rss share one ``bench.pipeline`` subprocess when
selected together.) A section whose module is absent is skipped with a note. The exit status is 0
unless a section crashed (or exited non-zero); a missed goal is a MISS in the table, not a
failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT
from bench.dashboard import TARGET_MS as ADMIN_TARGET_MS

SECTIONS = [
    "gateway",
    "processing",
    "delivery",
    "e2e",
    "postfix",
    "kill",
    "rss",
    "api",
    "sendapi",
    "messages",
    "webhooks",
    "admin",
    "stats",
    "dkim",
    "templates",
    "inbound",
    "faults",
]
PIPELINE = ("processing", "delivery", "e2e", "postfix", "kill", "rss")


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def run_section(label: str, args: list[str], json_path: Path | None, env=None) -> dict:
    """Run one benchmark subprocess, echoing its output; returns exit status, time, JSON."""
    print(f"\n######## {label}: {' '.join(args)}", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env
    )
    print(done.stdout, end="", flush=True)
    data = None
    if json_path is not None and json_path.exists():
        try:
            data = json.loads(json_path.read_text())
        except ValueError:
            data = None
    return {
        "label": label,
        "returncode": done.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "json": data,
        "stdout": done.stdout,
    }


def goals_from(section: str, run: dict) -> list[dict]:
    """PASS/MISS rows of one section: from its JSON ``goals``, else from its printed lines."""
    rows = []
    data = run["json"]
    if isinstance(data, dict) and isinstance(data.get("goals"), list):
        for goal in data["goals"]:
            rows.append(
                {
                    "section": section,
                    "verdict": "PASS" if goal.get("passed") else "MISS",
                    "goal": goal.get("goal", ""),
                    "measured": str(goal.get("measured", "")),
                    "note": goal.get("note", ""),
                }
            )
        return rows
    if section == "webhooks":  # one "key=value ..." line; its goal is its own, not judged here
        found = dict(re.findall(r"(\w+)=(\S+)", run["stdout"]))
        if "posts_per_second" in found:
            rows.append({"section": section, "verdict": "INFO",
                         "goal": "webhook posts by one worker process",
                         "measured": f"{found['posts_per_second']}/s ({found.get('pool', '')}, "
                                     f"{found.get('broker', '')})", "note": ""})  # fmt: skip
        return rows
    if section == "admin":  # the page table: page, status, cold ms, median ms, max ms
        pattern = r"^(\S.*?)\s+(\d{3})\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$"
        for page, status, _cold, median, _max in re.findall(pattern, run["stdout"], re.M):
            ok = status == "200" and float(median) <= ADMIN_TARGET_MS
            rows.append({"section": section, "verdict": "PASS" if ok else "MISS",
                         "goal": f"admin {page.strip()} <= {ADMIN_TARGET_MS:.0f} ms median",
                         "measured": f"{median} ms (HTTP {status})", "note": ""})  # fmt: skip
        return rows
    # Otherwise: the "PASS ..." / "MISS ..." lines the section prints.
    for line in run["stdout"].splitlines():
        match = re.match(r"\s*(PASS|MISS|FAIL)\b[:\s]+(.*)", line)
        if match:
            rows.append(
                {
                    "section": section,
                    "verdict": "PASS" if match.group(1) == "PASS" else "MISS",
                    "goal": match.group(2).strip(),
                    "measured": "",
                    "note": "",
                }
            )
    return rows


def plan(cfg, work: Path) -> list[tuple]:
    """(sections covered, label, argv, JSON path, environment or None) per subprocess."""
    quick = ["--quick"] if cfg.quick else []
    steps = []
    if "gateway" in cfg.only:
        path = work / "gateway.json"
        args = ["-m", "bench.gateway", *quick, "--json", str(path)]
        steps.append((["gateway"], "gateway", args, path, None))
    pipeline = [s for s in PIPELINE if s in cfg.only]
    if pipeline:
        path = work / "pipeline.json"
        args = ["-m", "bench.pipeline", "--only", ",".join(pipeline), *quick, "--json", str(path)]
        steps.append((pipeline, "+".join(pipeline), args, path, None))
    if "api" in cfg.only:
        path = work / "api.json"
        args = ["-m", "bench.bounce_api", *quick, "--json", str(path)]
        steps.append((["api"], "api", args, path, None))
    if "sendapi" in cfg.only:
        path = work / "sendapi.json"
        args = ["-m", "bench.send_api", *quick, "--json", str(path)]
        steps.append((["sendapi"], "sendapi", args, path, None))
    if "messages" in cfg.only:
        path = work / "messages.json"
        args = ["-m", "bench.messages_api", *quick, "--json", str(path)]
        steps.append((["messages"], "messages", args, path, None))
    if "webhooks" in cfg.only:
        # Its embedded filesystem broker in a temporary DATA_DIR: RabbitMQ's default virtual host
        # is shared with other runs, whose workers could take these tasks.
        args = ["-m", "bench.webhooks"]
        if cfg.quick:
            args += ["--events", "300"]
        # It migrates the database its settings name: a throwaway SQLite file in a temporary
        # DATA_DIR, never the project's ./data.
        data_dir = work / "webhooks-data"
        data_dir.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["DATA_DIR"] = str(data_dir)
        steps.append((["webhooks"], "webhooks", args, None, env))
    if "admin" in cfg.only:
        args = ["-m", "bench.dashboard"]
        if cfg.quick:
            args += ["--messages", "20000", "--bounces", "5000", "--repeat", "2"]
        steps.append((["admin"], "admin", args, None, None))
    if "stats" in cfg.only:
        path = work / "stats.json"
        args = ["-m", "bench.stats", *quick, "--json", str(path)]
        steps.append((["stats"], "stats", args, path, None))
    if "dkim" in cfg.only:
        path = work / "dkim.json"
        args = ["-m", "bench.dkim", *quick, "--json", str(path)]
        steps.append((["dkim"], "dkim", args, path, None))
    if "templates" in cfg.only:
        path = work / "templates.json"
        args = ["-m", "bench.templates", *quick, "--json", str(path)]
        steps.append((["templates"], "templates", args, path, None))
    if "inbound" in cfg.only:
        path = work / "inbound.json"
        args = ["-m", "bench.inbound", *quick, "--json", str(path)]
        steps.append((["inbound"], "inbound", args, path, None))
    if "faults" in cfg.only:
        path = work / "faults.json"
        args = ["-m", "bench.faults", *quick, "--json", str(path)]
        steps.append((["faults"], "faults", args, path, None))
    return steps


MODULES = {
    "gateway": "bench.gateway",
    "processing": "bench.pipeline",
    "delivery": "bench.pipeline",
    "e2e": "bench.pipeline",
    "postfix": "bench.pipeline",
    "kill": "bench.pipeline",
    "rss": "bench.pipeline",
    "api": "bench.bounce_api",
    "sendapi": "bench.send_api",
    "messages": "bench.messages_api",
    "webhooks": "bench.webhooks",
    "admin": "bench.dashboard",
    "stats": "bench.stats",
    "dkim": "bench.dkim",
    "templates": "bench.templates",
    "inbound": "bench.inbound",
    "faults": "bench.faults",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small numbers in every section")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--json", metavar="PATH", help="write the summary as JSON")
    cfg = parser.parse_args(argv)
    cfg.only = [s.strip() for s in cfg.only.split(",") if s.strip()]
    unknown = [s for s in cfg.only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    skipped = {}
    for section in list(cfg.only):
        if not module_exists(MODULES[section]):
            skipped[section] = f"{MODULES[section]} does not exist (yet): skipped"
            cfg.only.remove(section)
    rows, crashed, runs = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        for sections, label, args, path, env in plan(cfg, Path(tmp)):
            run = run_section(label, args, path, env)
            runs.append({k: v for k, v in run.items() if k != "stdout"})
            found = []
            for section in sections:
                section_rows = goals_from(section, run)
                if len(sections) > 1:  # one bench.pipeline JSON covers several sections
                    section_rows = [r for r in section_rows if _belongs(section, r["goal"])]
                found += section_rows
            rows += found
            # bench.dashboard exits 1 when a page is slow: a MISS, not a crash.
            slow_pages = label == "admin" and run["returncode"] == 1 and found
            if run["returncode"] != 0 and not slow_pages:
                crashed.append(f"{label} (exit status {run['returncode']})")
    print("\n######## summary")
    width = max([len(r["goal"]) for r in rows] + [20])
    width = min(width, 90)
    for row in rows:
        note = f"  [{row['note']}]" if row["note"] else ""
        goal = row["goal"] if len(row["goal"]) <= width else row["goal"][: width - 1] + "…"
        line = f"  {row['verdict']:<4}  {row['section']:<10} {goal:<{width}}  {row['measured']}"
        print(line + note)
    for section, note in skipped.items():
        print(f"  SKIP  {section:<10} {note}")
    for label in crashed:
        print(f"  CRASH {label}")
    if cfg.json:
        Path(cfg.json).write_text(
            json.dumps({"goals": rows, "skipped": skipped, "crashed": crashed, "runs": runs},
                       indent=2, default=str) + "\n"
        )  # fmt: skip
    return 1 if crashed else 0


def _belongs(section: str, goal: str) -> bool:
    text = goal.lower()
    if section == "processing":
        return text.startswith("processing")
    if section == "e2e":
        return text.startswith("end to end")
    if section == "postfix":
        return text.startswith("versus postfix")
    if section == "delivery":
        return text.startswith("delivery")
    if section == "rss":
        return text.startswith("worker rss")
    return "kill" in text


if __name__ == "__main__":
    sys.exit(main())
