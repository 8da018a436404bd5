"""Postfix on this machine, the end-to-end baseline: ``smtp-source`` → Postfix → ``smtp-sink``.

A private Postfix instance runs from a configuration directory of its own (``postfix -c DIR``):
its own queue, a loopback listener on a free port, ``relayhost`` the sink, no chroot, no local
delivery, no TLS. Queue files are written and fsynced as in any Postfix. Messages are counted at
the sink (``smtp-sink -c`` prints a running ``mesg=N`` counter), and the same counter times the
project's own pipeline, so both figures mean "from the first message sent until the sink has
counted them all".
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from bench.common import CpuMeter, Service, find_tool, free_port, reachable, start, step

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
myhostname = relay.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtputf8_enable = no
alias_maps =
alias_database =
local_recipient_maps =
maillog_file_prefixes = {work}
maillog_file = {work}/maillog
syslog_name = postfix-bench
default_process_limit = 100
"""

_COUNTER = re.compile(rb"mesg=(\d+)")


def available() -> bool:
    """Postfix and its load tools are installed, and we may start it (it needs root)."""
    tools = ("postfix", "postconf", "smtp-source", "smtp-sink")
    return os.geteuid() == 0 and all(find_tool(tool) for tool in tools)


class CountingSink:
    """Postfix's C ``smtp-sink`` on a free port; ``count()`` reads its running counter."""

    def __init__(self, stack: contextlib.ExitStack, work: Path, name: str = "smtp-sink"):
        self.port = free_port()
        args = [find_tool("smtp-sink"), "-c", "-u", "nobody", f"127.0.0.1:{self.port}", "1000"]
        self.service: Service = start(stack, name, args, dict(os.environ), work)
        _wait_listening(self.port, self.service)

    def count(self) -> int:
        with open(self.service.log_path, "rb") as log:
            log.seek(max(0, os.path.getsize(self.service.log_path) - 256))
            found = _COUNTER.findall(log.read())
        return int(found[-1]) if found else 0

    def wait_for(self, total: int, timeout: float, stall: float = 60.0) -> float | None:
        """Wait until the sink has counted ``total`` messages; returns that moment
        (``time.monotonic()``), or None after ``timeout`` or ``stall`` seconds without progress."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            seen = self.count()
            if seen >= total:
                return time.monotonic()
            if seen != last:
                last, last_change = seen, time.monotonic()
            elif time.monotonic() - last_change > stall:
                return None
            time.sleep(0.02)
        return None


def _wait_listening(port: int, service: Service, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not reachable("127.0.0.1", port, 0.2):
        if time.monotonic() > deadline or service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} did not start:\n{service.output()[-2000:]}")
        time.sleep(0.05)


def start_postfix(stack: contextlib.ExitStack, work: Path, sink_port: int) -> int:
    """A private Postfix relaying everything to ``127.0.0.1:sink_port``; returns its port."""
    base = work / "postfix"
    conf, queue, data = base / "conf", base / "queue", base / "data"
    for folder in (conf, queue, data):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.chown(data, "postfix")
    for folder in (work, base):  # Postfix's daemons run as the postfix user: let them through
        folder.chmod(folder.stat().st_mode | 0o711)
    port = free_port()
    shutil.copy("/etc/postfix/master.cf", conf / "master.cf")
    (conf / "main.cf").write_text(
        MAIN_CF.format(queue=queue, data=data, work=base, sink_port=sink_port)
    )
    postconf = [find_tool("postconf"), "-c", str(conf)]
    subprocess.run([*postconf, "-F", "*/*/chroot=n"], check=True)
    # The smtpd listener: the stock "smtp inet" service moved to our loopback port.
    subprocess.run([*postconf, "-M#", "smtp/inet"], check=True)
    subprocess.run(
        [*postconf, "-M", f"127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - n - - smtpd"],
        check=True,
    )
    postfix = [find_tool("postfix"), "-c", str(conf)]
    subprocess.run([*postfix, "check"], check=True, capture_output=True)
    subprocess.run([*postfix, "start"], check=True, capture_output=True)
    stack.callback(subprocess.run, [*postfix, "stop"], capture_output=True, check=False)
    deadline = time.monotonic() + 20
    while not reachable("127.0.0.1", port, 0.2):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Postfix did not start:\n{_tail(base / 'maillog')}")
        time.sleep(0.1)
    return port


def _tail(path: Path, size: int = 2000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else "(no log)"


def smtp_source(port: int, messages: int, sessions: int, size: int, sender: str, to: str):
    """Run Postfix's ``smtp-source`` (one connection per message, HELO, no AUTH)."""
    args = [find_tool("smtp-source"), "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", sender, "-t", to, f"127.0.0.1:{port}"]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, check=False)


def relay_through(port: int, sink: CountingSink, cfg, what: str, meter=None) -> dict:
    """Send ``cfg.messages`` with smtp-source to ``port`` and time them until the sink has all;
    with a ``CpuMeter``, where the CPU went meanwhile."""
    if meter:
        meter.start()
    before = sink.count()
    total = before + cfg.messages
    step(f"{what}: smtp-source -s {cfg.load_concurrency} -m {cfg.messages} -l {cfg.size}")
    started = time.monotonic()
    sent = smtp_source(port, cfg.messages, cfg.load_concurrency, cfg.size, cfg.sender, cfg.to)
    accepted_in = time.monotonic() - started
    done = sink.wait_for(total, timeout=cfg.timeout)
    seconds = (done or time.monotonic()) - started
    counted = sink.count() - before
    cpu = meter.stop(counted) if meter else {}
    return {
        "cpu_ms_per_message": cpu,
        "messages": cfg.messages,
        "counted_at_sink": counted,
        "completed": done is not None and sent.returncode == 0,
        "source_errors": sent.stderr.strip()[-500:],
        "accept_seconds": round(accepted_in, 3),
        "seconds": round(seconds, 3),
        "messages_per_second": round(counted / seconds, 1) if seconds else 0.0,
    }


def postfix_baseline(cfg, stack: contextlib.ExitStack, work: Path) -> dict:
    """Postfix relaying the smtp-source load to a counting smtp-sink."""
    sink = CountingSink(stack, work, "smtp-sink-postfix")
    port = start_postfix(stack, work, sink.port)
    meter = CpuMeter({}, users=("postfix", "postgres", "rabbitmq"))
    return relay_through(port, sink, cfg, "Postfix baseline", meter)
