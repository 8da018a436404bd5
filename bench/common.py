"""What every benchmark shares: the environment of its Django subprocesses, throwaway databases and
folders, background processes with log files, the gateway and the Postfix sink, and ``main``.

Each benchmark runs the product the way production does, as separate processes (``manage.py``,
``runsmtp``, Celery workers, ``python -c`` Django scripts), all started from the project root with
an environment built by :func:`django_env`; everything a run creates is registered on one
:class:`contextlib.ExitStack`, so that an error or a SIGTERM still stops every process and drops
every database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672"
SETTINGS_MODULE = "postmark_site.settings"

# ``python -m celery -A postmark_site``, followed by ``worker ...`` or ``beat ...``.
CELERY = (sys.executable, "-m", "celery", "-A", "postmark_site")

# The gateway under a benchmark's load, all from 127.0.0.1: the credential cache outlives the run
# (no re-check mid-run), the per-address connection cap is out of the way, and a stopped gateway
# does not wait 30 s for sessions the load generator has already dropped.
GATEWAY_SETTINGS = {
    "SMTP_AUTH_CACHE_SECONDS": "30",
    "SMTP_MAX_CONNECTIONS_PER_ADDRESS": "5000",
    "SMTP_SHUTDOWN_GRACE": "5",
}

# The gateway with its per-transaction log line (INFO, logger smtpgw.transaction) switched off
# but the "SMTP gateway ready" lines (INFO too) kept: LOG_LEVEL=WARNING would hide both, and the
# settings have no per-logger knob. Otherwise this is exactly ``manage.py runsmtp ARGS``.
RUNSMTP = (
    "import logging, sys, django; django.setup(); "
    "logging.getLogger('smtpgw.transaction').setLevel(logging.WARNING); "
    "from django.core.management import call_command; "
    "call_command('runsmtp', *sys.argv[1:])"
)
READY = "SMTP gateway ready"
READY_PID = re.compile(r"SMTP gateway ready \(pid (\d+)\)")

# Run with ``python -c``: the table of each model named in argv ("app_label.Model"), as JSON.
TABLES = """
import json, sys, django
django.setup()
from django.apps import apps
print(json.dumps({name: apps.get_model(name)._meta.db_table for name in sys.argv[1:]}))
"""


# Run in a subprocess with DATABASE_URL set: times each GET of cfg["requests"] with the test client
# (warm-ups, then cfg["repeat"] timed runs) and captures the queries of one more; prints JSON.
API_TIMING = r"""
import json, statistics, sys, time, django
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
cfg = json.loads(sys.argv[1])
client = Client(HTTP_X_POSTMARK_SERVER_TOKEN=cfg["token"], HTTP_ACCEPT="application/json")
results = {}
for name, path in cfg["requests"].items():
    for _ in range(cfg["warmup"]):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
    times = []
    for _ in range(cfg["repeat"]):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as captured:
        client.get(path)
    body = response.json()
    times.sort()
    queries = [{"sql": q["sql"], "ms": float(q["time"]) * 1000} for q in captured.captured_queries]
    fields = body.values() if isinstance(body, dict) else ()
    listed = next((v for v in fields if isinstance(v, list)), None)
    results[name] = {
        "path": path,
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(round(0.95 * len(times))) - 1)], 1),
        "min_ms": round(times[0], 1),
        "total_count": body.get("TotalCount") if isinstance(body, dict) else None,
        "returned": len(listed) if listed is not None else None,
        "queries": queries,
    }
print(json.dumps(results))
"""


# --- small helpers ------------------------------------------------------------------------------


def step(text: str) -> None:
    """Progress on stderr, so that stdout stays the report."""
    print(f"== {text}", file=sys.stderr, flush=True)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port that was free a moment ago, never one this process handed out before:
    the kernel may offer a just-closed port again, and two listeners given the same port would
    split its connections."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise the soft RLIMIT_NOFILE (inherited by every process started later); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def find_tool(name: str) -> str | None:
    """Path of a Postfix tool on PATH or in /usr/sbin."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin")


def proc_status_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of ``pid`` from /proc/<pid>/status, in MB (VmRSS, VmHWM: the peak RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def reset_peak_rss(pid: int) -> bool:
    """Reset the peak RSS (VmHWM) of ``pid`` to its current RSS; False where Linux does not let
    this process do it (then VmHWM is the peak since the process started)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of every thread of ``pid`` so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _uid(user: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, every core (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


class CpuMeter:
    """CPU seconds each role's processes used between ``start`` and ``stop``, and how busy the
    whole machine was meanwhile: where an end-to-end run's CPU goes. PostgreSQL's and the
    broker's are their users' processes (a backend that exits meanwhile is not counted);
    ``other`` is everything else on the machine (the load, the sink)."""

    def __init__(self, roles: dict[str, list[int]], users=("postgres", "rabbitmq")):
        self.roles = roles
        self.users = {u: _uid(u) for u in users}
        self.users = {u: uid for u, uid in self.users.items() if uid is not None}

    def _read(self) -> dict[str, float]:
        seen = {}
        for role, pids in self.roles.items():
            seen[role] = sum(cpu_seconds(pid) for pid in pids if Path(f"/proc/{pid}").exists())
        for user, uid in self.users.items():
            seen[user] = {}
            for proc in Path("/proc").iterdir():
                try:
                    if proc.name.isdigit() and proc.stat().st_uid == uid:
                        seen[user][int(proc.name)] = cpu_seconds(int(proc.name))
                except OSError:  # gone meanwhile
                    continue
        seen["machine busy"], seen["machine all"] = machine_cpu()
        return seen

    def start(self) -> None:
        self.before = self._read()

    def stop(self, messages: int) -> dict:
        """Milliseconds of CPU per message by role, and the machine's busy share in %."""
        after = self._read()
        used = {k: after[k] - self.before[k] for k in after if k not in self.users}
        for user in self.users:  # per process: one that exited meanwhile is left out
            before = self.before[user]
            used[user] = sum(cpu - before.get(pid, 0.0) for pid, cpu in after[user].items())
        named = [*self.roles, *self.users]
        per = {role: round(used[role] * 1000 / max(messages, 1), 3) for role in named}
        other = used["machine busy"] - sum(used[role] for role in named)
        per["other"] = round(other * 1000 / max(messages, 1), 3)
        per["machine busy %"] = round(100 * used["machine busy"] / max(used["machine all"], 1e-9))
        return per


def scratch_dir(stack: contextlib.ExitStack, prefix: str) -> Path:
    """A temporary folder (removed by ``stack``) for logs and files, with an empty ``data``
    folder inside for DATA_DIR: a benchmark never touches the project's ./data."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    stack.callback(shutil.rmtree, work, ignore_errors=True)
    (work / "data").mkdir()
    return work


# --- Django subprocesses ------------------------------------------------------------------------


def django_env(
    database_url: str | None = None,
    data_dir: Path | None = None,
    *,
    log_level: str = "INFO",
    **settings: object,
) -> dict:
    """The environment of a Django process a benchmark starts (manage.py, a script, the gateway, a
    worker): this process's own, the project's settings module, ``database_url`` and ``data_dir``
    (``None``: as inherited), ``log_level`` and every keyword as a setting (values as strings).

    Output is unbuffered, so that a log file shows a line (a "ready", a traceback) as soon as the
    process writes it, not when it exits."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    if data_dir is not None:
        env["DATA_DIR"] = str(data_dir)
    env["LOG_LEVEL"] = log_level
    env["PYTHONUNBUFFERED"] = "1"
    env.update({name: str(value) for name, value in settings.items()})
    return env


def gateway_env(database_url: str, data_dir: Path) -> dict:
    """:func:`django_env` with :data:`GATEWAY_SETTINGS`, at INFO for the gateway's ready lines (see
    :data:`RUNSMTP` for its transaction log)."""
    return django_env(database_url, data_dir, **GATEWAY_SETTINGS)


def manage(env: dict, *args: str) -> str:
    """Run ``manage.py ARGS`` and return its stdout; raise with its output on failure."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def django_script(env: dict, code: str, *args: str, timeout: float = 1800) -> object:
    """Run ``python -c code args`` (a Django script) and return the JSON of its last output line."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"script failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_tables(env: dict, *models: str) -> dict[str, str]:
    """``{"app_label.Model": table}`` as Django names them. SQL that a benchmark runs outside
    Django (counts while the workers run, bulk fills) asks the models, so that it follows them
    when they move between apps."""
    return django_script(env, TABLES, *models)


# --- PostgreSQL ---------------------------------------------------------------------------------


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` with its database replaced by ``name``."""
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def throwaway_database(
    stack: contextlib.ExitStack, name: str, template: str = "", admin_url: str = POSTGRES_ADMIN_URL
) -> str:
    """Create database ``name`` (empty, or a copy of ``template``), dropped again by ``stack``;
    return its URL. A database of that name left over by a killed run is dropped first."""
    import psycopg

    def drop():
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    drop()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    stack.callback(drop)
    return database_url(admin_url, name)


# --- RabbitMQ -----------------------------------------------------------------------------------


def rabbitmqctl(*args: str) -> None:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")


def prepare_vhost(stack: contextlib.ExitStack, name: str) -> str:
    """A RabbitMQ virtual host of our own (deleted by ``stack``); returns the broker URL."""
    if not shutil.which("rabbitmqctl"):
        raise RuntimeError("rabbitmqctl is needed to create a private RabbitMQ virtual host")
    with contextlib.suppress(RuntimeError):
        rabbitmqctl("delete_vhost", name)
    rabbitmqctl("add_vhost", name)
    stack.callback(lambda: rabbitmqctl("delete_vhost", name))
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return f"{RABBITMQ}/{name}"


# --- processes ----------------------------------------------------------------------------------


def procfile_line(role: str) -> str:
    """The Procfile's ``role:`` command as written there (for reports)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == role:
            return command.strip()
    raise RuntimeError(f"Procfile has no {role}: line")


def procfile_command(role: str) -> list[str]:
    """The Procfile's ``role:`` line as an argument list, read each time so that a benchmark runs
    what ``make run`` runs; ``celery`` and ``python`` become this interpreter (the venv's), after
    a ``nice -n N`` in front."""
    args = shlex.split(procfile_line(role))
    prefix = []
    if args[0] == "nice":  # nice -n N <command>
        prefix, args = args[:3], args[3:]
    if args[0] == "celery":
        return [*prefix, sys.executable, "-m", "celery", *args[1:]]
    return [*prefix, sys.executable, *args[1:]] if args[0] == "python" else prefix + args


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it (a worker's pool and embedded beat), from the
    parent ids in /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


class Service:
    """A background process whose output goes to a log file; ``stop()`` terminates and reaps it.

    The log is ``log_path`` when given (``os.devnull`` discards it), else ``<log_dir>/<name>.log``.
    """

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict,
        log_dir: Path | None = None,
        *,
        log_path: Path | None = None,
    ):
        self.name = name
        self.log_path = Path(log_path) if log_path else Path(log_dir) / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout: float = 60.0) -> str:
        """Wait until ``text`` appears ``count`` times in the output; return the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.output()
            if output.count(text) >= count:
                return output
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: {text!r} x{count} not seen:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start(stack: contextlib.ExitStack, name: str, args: list[str], env: dict, log_dir: Path):
    """Start a :class:`Service` that the ``stack`` stops."""
    service = Service(name, args, env, log_dir)
    stack.callback(service.stop)
    return service


def start_gateway(stack, env: dict, port: int, processes: int, log_dir: Path, name: str):
    """Start ``runsmtp`` on ``port``; return (service, pids of the serving processes)."""
    args = [
        sys.executable,
        "-c",
        RUNSMTP,
        "--processes",
        str(processes),
        "--listen",
        f"transactional=127.0.0.1:{port}",
    ]
    service = start(stack, name, args, env, log_dir)
    output = service.wait_for(READY, count=processes)
    return service, [int(pid) for pid in READY_PID.findall(output)]


def start_smtp_sink(stack, tool: str, port: int, log_dir: Path):
    """Start Postfix's C ``smtp-sink`` (backlog 1000) on ``port``."""
    args = [tool, "-c"]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]  # smtp-sink refuses to run as root without -u
    args += [f"127.0.0.1:{port}", "1000"]
    service = start(stack, "smtp-sink", args, dict(os.environ), log_dir)
    deadline = time.monotonic() + 10
    while not reachable("127.0.0.1", port, 0.2):
        if time.monotonic() > deadline or service.proc.poll() is not None:
            raise RuntimeError(f"smtp-sink did not start:\n{service.output()[-2000:]}")
        time.sleep(0.05)
    return service


# --- main ---------------------------------------------------------------------------------------


def benchmark_parser(
    module: str, doc: str, quick_help: str = "small numbers (for tests)"
) -> argparse.ArgumentParser:
    """The command line of ``python -m <module>``, with the two options ``python -m bench`` gives
    every benchmark: ``--quick`` and ``--json PATH`` (written by :func:`run_benchmark`)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH as JSON")
    return parser


def goal_lines(goals: list[dict]) -> list[str]:
    """The "goals" part of a report: one PASS/MISS line per goal, with its note."""
    lines = ["goals"]
    for goal in goals:
        note = f"  [{goal['note']}]" if goal["note"] else ""
        verdict = "PASS" if goal["passed"] else "MISS"
        lines.append(f"  {verdict}  {goal['goal']}: {goal['measured']}{note}")
    return lines


def run_benchmark(cfg, run, report) -> dict:
    """``run(cfg, stack)``, then print ``report(result)`` and write ``cfg.json``; return the result.

    SIGTERM becomes an exception (exit status 143) so that ``stack`` still stops every process and
    drops every database when the benchmark itself is terminated (by ``python -m bench`` or a
    test's timeout)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.ExitStack() as stack:
        result = run(cfg, stack)
    print(report(result))
    if cfg.json:
        Path(cfg.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result
