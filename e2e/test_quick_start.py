"""The Quick start as a new user follows it: from a fresh data directory, ``migrate``, the demo
data and its banner (``ensuredemo``), the Procfile's processes (what ``make run`` starts, on
ports of its own from the environment), the banner's swaks line as printed, the message in the
admin, the metrics at the URLs the banner names; then Live mail relayed to the local sink the
banner prints, arriving with its trace fields."""

import http.cookiejar
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import ROOT, Process, free_port, wait_for
from smtpgw.quickstart import SINK_ADDRESS, SINK_COMMAND, SINK_RELAY

pytestmark = [pytest.mark.once_sqlite, pytest.mark.slow]

# What the test process set for itself and a fresh installation must not inherit.
INHERITED = (
    "DATABASE_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR", "DATA_DIR",
    "DJANGO_SETTINGS_MODULE", "SMTP_HTTP", "SMTP_LISTEN", "WEB_BIND", "OUTBOUND_SMTP_RELAY",
    "TRACKING_BASE_URL", "SMTP_HOSTNAME", "MESSAGE_ID_DOMAIN", "BOUNCE_DOMAIN",
)  # fmt: skip


def banner_section(banner: str, start: str, end: str) -> list[str]:
    lines = banner.splitlines()
    first = next(i for i, line in enumerate(lines) if start in line) + 1
    last = next(i for i, line in enumerate(lines) if i > first and end in line)
    return [line.strip() for line in lines[first:last] if line.strip()]


def command_of(lines: list[str]) -> str:
    """Shell lines continued with a backslash, as one command."""
    return " ".join(line.rstrip("\\").strip() for line in lines)


class Browser:
    """Logs in to the admin with a cookie jar, as a browser would (no JavaScript needed)."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path, timeout=20) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def login(self, user: str, password: str) -> None:
        _, page = self.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        fields = {"username": user, "password": password, "csrfmiddlewaretoken": token}
        data = urllib.parse.urlencode({**fields, "next": "/admin/"}).encode()
        url = self.base + "/admin/login/"
        request = urllib.request.Request(url, data=data, headers={"Referer": url})  # noqa: S310
        with self.opener.open(request, timeout=20) as response:
            assert "/admin/login/" not in response.url, "login refused"


def test_the_quick_start_from_a_fresh_data_directory(tmp_path):
    web_port, smtp_port, broadcast_port, bounce_port, metrics_port, sink_port = (
        free_port() for _ in range(6)
    )
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env.update(
        DATA_DIR=str(tmp_path / "data"),
        WEB_BIND=f"127.0.0.1:{web_port}",
        WEB_WORKERS="1",
        SMTP_LISTEN=f"transactional=127.0.0.1:{smtp_port},broadcast=127.0.0.1:{broadcast_port},"
        f"bounce=127.0.0.1:{bounce_port}",
        SMTP_HTTP=f"127.0.0.1:{metrics_port}",
        PATH=f"{ROOT / '.venv' / 'bin'}:{os.path.dirname(sys.executable)}:{env['PATH']}",
        PYTHONUNBUFFERED="1",
    )

    def manage(*args, env=env) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "--noinput")
    banner = manage("ensuredemo")
    base = f"http://127.0.0.1:{web_port}"
    assert f"Admin:          {base}/admin/" in banner
    assert f"{base}/metrics (workers), http://127.0.0.1:{metrics_port}/metrics (gateway)" in banner
    user, password = re.search(r"Login:\s+(\S+) / (\S+)", banner).groups()
    swaks = command_of(banner_section(banner, "Send a first message", "See it:"))
    assert swaks.startswith(f"swaks --server 127.0.0.1:{smtp_port} --tls ")
    see_it = re.search(r"See it:\s+(\S+)", banner).group(1)

    # The local sink, as the banner prints it (on a port of the test's own), and make run's
    # processes relaying to it.
    assert SINK_COMMAND.startswith(".venv/bin/python -m aiosmtpd")
    sink_command = SINK_COMMAND.replace(SINK_ADDRESS, f"127.0.0.1:{sink_port}").split()
    sink_command[0] = sys.executable
    sink = Process(sink_command, env, tmp_path / "sink.log")
    relay = SINK_RELAY.replace(SINK_ADDRESS, f"127.0.0.1:{sink_port}")
    run_env = {**env, "OUTBOUND_SMTP_RELAY": relay}
    stack = Process(["honcho", "-f", "Procfile", "start"], run_env, tmp_path / "run.log")
    try:
        stack.wait_for("SMTP gateway ready", timeout=120)
        stack.wait_for("Listening at", timeout=120)
        stack.wait_for("ready.", timeout=120)  # the Celery worker

        # Sandbox: the first message, sent with the banner's line, is in the admin.
        done = subprocess.run(["bash", "-c", swaks], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "STARTTLS" in done.stdout and "queued as" in done.stdout
        browser = Browser(base)
        browser.login(user, password)
        path = see_it[len(base) :]

        def listed() -> bool:
            status, page = browser.get(path)
            return status == 200 and "user@example.net" in page

        wait_for(listed, timeout=90, what="the first message in the admin")

        # The gateway's metrics and the workers', where the banner says.
        gateway = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(gateway, timeout=20) as r:  # noqa: S310
            gateway_metrics = r.read().decode()
        assert "postmark_smtp_" in gateway_metrics
        with urllib.request.urlopen(f"{base}/metrics", timeout=20) as r:  # noqa: S310
            assert "postmark_worker_tasks_total" in r.read().decode()

        # Live: switched by the command the banner names, relayed to the sink, which prints it.
        assert "ensuredemo --live" in banner
        assert "Live: relayed to" in manage("ensuredemo", "--live", env=run_env)
        done = subprocess.run(["bash", "-c", swaks.replace("'Hello'", "'Hello, sink'")],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for(lambda: "Subject: Hello, sink" in sink.output(), timeout=90, what="the sink")
        printed = sink.output()
        assert re.search(r"Received: from \S+ \(\[127\.0\.0\.1\]\)", printed), printed
        assert "with ESMTPSA id " in printed and "Date: " in printed
        assert "DKIM-Signature:" in printed
    finally:
        stack.stop(timeout=30)
        sink.stop()
    time.sleep(0)  # nothing left running: Process.stop reaped both
