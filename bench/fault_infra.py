"""What the fault matrix (``bench.faults``) runs on: private services it may stop and start, and
the processes under test, supervised.

- :class:`PrivatePostgres`: a cluster of its own (``initdb`` in a temporary folder, ``pg_ctl``
  on a free loopback port), so that a row can stop and start PostgreSQL without touching the
  machine's shared server;
- :class:`PrivateRabbit`: a RabbitMQ node of its own (its own node name, ports, Mnesia and log
  folders, configuration, Erlang cookie; no plugins, so no management listener);
- :class:`MemoryCap`: a memory cgroup (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``) whose
  processes the kernel's OOM killer kills when they outgrow it; where this machine offers none,
  a watcher that SIGKILLs at the same size stands in for it (``method`` says which);
- :class:`Tmpfs`: a small tmpfs mounted for a data folder, that :meth:`Tmpfs.fill` fills up;
- :class:`Supervised`: a process restarted when it exits, as the deploy/ units' systemd does
  (``Restart=on-failure``, ``RestartSec=2``), its exits and restarts recorded;
- :class:`PacedLoad`: ``bench.loadgen`` at a steady rate in a thread, until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import ROOT, free_port, proc_status_mb, process_tree, reachable
from bench.loadgen import Options, RunState, run_async, summarize

# --- PostgreSQL ---------------------------------------------------------------------------------


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PrivatePostgres:
    """A PostgreSQL cluster of our own on a free loopback port; ``remove()`` stops it and deletes
    its folder."""

    def __init__(self):
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            raise RuntimeError("PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)")
        self.bin = Path(binaries[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        if os.geteuid() == 0:
            pwd.getpwnam("postgres")  # KeyError: no postgres user to run initdb as
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        done = subprocess.run(
            _as_postgres(
                [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
            ),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        self.admin_url = self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log")]
        if args[0] == "start":
            command += [
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                "-c max_connections=200",
            ]
        done = subprocess.run(
            _as_postgres([*command, *args, "-w"]), capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {args[0]} failed: {done.stderr[-2000:]}")

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self) -> None:
        """A fast shutdown: every session is disconnected, as by a restart."""
        self._pg_ctl("stop", "-m", "fast")

    def create_database(self, name: str, template: str = "") -> str:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(
                f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            )
        return self.url(name)

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            subprocess.run(
                _as_postgres(
                    [str(self.bin / "pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate"]
                ),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


# --- RabbitMQ -----------------------------------------------------------------------------------


def _rabbit_tool(name: str) -> str:
    """The tool itself, not Debian's wrapper in /usr/sbin (which runs it as the rabbitmq user,
    with that user's home, cookie and configuration)."""
    own = Path("/usr/lib/rabbitmq/bin") / name
    found = str(own) if own.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed")
    return found


class PrivateRabbit:
    """A RabbitMQ node of our own: node name ``bench-<pid>@localhost``, AMQP and distribution on
    free loopback ports, Mnesia, logs, configuration and Erlang cookie in a temporary folder, no
    plugins. Its queues and persistent messages survive ``stop()`` and ``start()``."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="faults-rabbit-"))
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"bench-{os.getpid()}@localhost"
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        self.env = {
            **os.environ,
            "HOME": str(self.dir),  # the Erlang cookie of this node and its rabbitmqctl
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 120.0) -> None:
        self.starts += 1
        log = open(self.dir / f"server-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [_rabbit_tool("rabbitmq-server")],
            cwd=self.dir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:  # await_startup fails at once until the node has registered with epmd
            try:
                self.ctl("await_startup", timeout=timeout)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(1.0)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        done = subprocess.run(
            [_rabbit_tool("rabbitmqctl"), "-q", "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()[-1500:]}")
        return done.stdout

    def add_vhost(self, name: str) -> str:
        """A virtual host for one row; returns its broker URL."""
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the node (as ``rabbitmqctl stop`` does), and wait for its processes to end."""
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.ctl("stop", timeout=60)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        deadline = time.monotonic() + 30
        while reachable("127.0.0.1", self.port, 0.2) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.proc = None

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- memory cap ---------------------------------------------------------------------------------


def _own_cgroup() -> tuple[str, Path] | None:
    """(version, folder) of a memory cgroup this process may create children in, or None."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if folder.is_dir() and os.access(folder, os.W_OK):
                return "v1", folder
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            for base in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                folder = base / line[3:].lstrip("/")
                controllers = folder / "cgroup.controllers"
                if (
                    controllers.exists()
                    and "memory" in controllers.read_text().split()
                    and os.access(folder, os.W_OK)
                ):
                    return "v2", folder
    return None


class MemoryCap:
    """A memory limit on a group of processes. With a cgroup (``method`` "cgroup v1"/"cgroup
    v2") the kernel's OOM killer enforces it; without one (``method`` "SIGKILL at RSS"), a thread
    sums the RSS of the processes added and SIGKILLs the largest once the sum passes the limit,
    which is what the OOM killer would have done."""

    def __init__(self, name: str, force_watch: bool = False):
        self.limit = 0
        self.watched: list[int] = []
        self.killed_by_watch = 0
        self.folder = None
        found = None if force_watch else _own_cgroup()
        if found:
            version, parent = found
            self.version, self.folder = version, parent / name
            with contextlib.suppress(FileExistsError):
                self.folder.mkdir()
            if version == "v2" and not (self.folder / "memory.max").exists():
                with contextlib.suppress(OSError):  # the memory controller for our children
                    (parent / "cgroup.subtree_control").write_text("+memory")
            self.method = f"cgroup {version}"
        else:
            self.method = "SIGKILL at RSS"
            self.halt = threading.Event()
            threading.Thread(target=self._watch, daemon=True).start()

    def _file(self, v1: str, v2: str) -> Path:
        return self.folder / (v1 if self.version == "v1" else v2)

    def set_limit(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        if self.folder:
            self._file("memory.limit_in_bytes", "memory.max").write_text(str(limit_bytes))

    def usage(self) -> int:
        """Bytes the group uses now (the cgroup's own count, page cache included)."""
        if self.folder:
            return int(self._file("memory.usage_in_bytes", "memory.current").read_text())
        return int(sum(self._rss(pid) for pid in self.pids()) * 1024 * 1024)

    def oom_kills(self) -> int:
        if not self.folder:
            return self.killed_by_watch
        events = self._file("memory.oom_control", "memory.events").read_text()
        for line in events.splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def join(self) -> str:
        """The path a child writes its pid to (from ``preexec_fn``), or '' without a cgroup."""
        return str(self.folder / "cgroup.procs") if self.folder else ""

    def add(self, pid: int) -> None:
        if not self.folder:
            self.watched.append(pid)

    def pids(self) -> list[int]:
        if self.folder:
            text = (self.folder / "cgroup.procs").read_text()
            return [int(p) for p in text.split()]
        alive = []
        for pid in self.watched:
            alive += [p for p in process_tree(pid) if Path(f"/proc/{p}").exists()]
        return alive

    @staticmethod
    def _rss(pid: int) -> float:
        try:
            return proc_status_mb(pid)
        except OSError:
            return 0.0

    def _watch(self) -> None:
        while not self.halt.wait(0.05):
            if not self.limit:
                continue
            sizes = {pid: self._rss(pid) for pid in self.pids()}
            if sizes and sum(sizes.values()) * 1024 * 1024 > self.limit:
                with contextlib.suppress(OSError):
                    os.kill(max(sizes, key=sizes.get), signal.SIGKILL)
                    self.killed_by_watch += 1

    def remove(self) -> None:
        if not self.folder:
            self.halt.set()
            return
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.folder.rmdir()
                return
            except OSError:
                time.sleep(0.1)


# --- a small disk -------------------------------------------------------------------------------


class Tmpfs:
    """A tmpfs of ``size_mb`` mounted on ``path`` (root only); ``fill()`` leaves it no free byte,
    ``unfill()`` gives the space back, ``remove()`` unmounts it."""

    def __init__(self, path: Path, size_mb: int):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mount -t tmpfs failed: {done.stderr.strip()}")
        self.filler = self.path / "filler"

    def free_mb(self) -> float:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize / 1024 / 1024

    def fill(self) -> None:
        chunk = b"\0" * (1 << 20)
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 4096, 1):  # to the last byte
                with contextlib.suppress(OSError):
                    while os.write(fd, chunk[:size]):
                        pass
        finally:
            os.close(fd)

    def unfill(self) -> None:
        self.filler.unlink(missing_ok=True)

    def remove(self) -> None:
        for _ in range(20):
            if subprocess.run(["umount", str(self.path)], capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


# --- supervised processes -----------------------------------------------------------------------


class Supervised:
    """A process (its output appended to ``<work>/<name>.log``) started again 2 s after it exits,
    as systemd does for the deploy/ units. ``exits`` records (unix time, exit status) of each
    exit, ``ready_at`` the unix time each start printed ``ready_text``. What the process left
    behind when it died (a ``-B`` beat child) is killed first, as systemd kills a unit's cgroup."""

    RESTART_SEC = 2.0

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict,
        work: Path,
        ready_text: str,
        cap: MemoryCap | None = None,
    ):
        self.name, self.args, self.env, self.ready_text, self.cap = name, args, env, ready_text, cap
        self.log_path = Path(work) / f"{name}.log"
        self.exits: list[tuple[float, int]] = []
        self.ready_at: list[float] = []
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._supervise, daemon=True)

    def _spawn(self) -> None:
        args = self.args
        if join := self.cap.join() if self.cap else "":  # into the cgroup before it starts
            args = ["sh", "-c", f'echo $$ > {join} && exec "$@"', "sh", *args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.cap:
            self.cap.add(self.proc.pid)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for this start's ``ready_text``; returns the unix time it was seen."""
        wanted = len(self.exits) + 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output().count(self.ready_text) >= wanted:
                return time.time()
            if (
                self.proc is not None
                and self.proc.poll() is not None
                and not self.thread.is_alive()
            ):
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: {self.ready_text!r} not seen:\n{self.output()[-3000:]}")

    def start(self) -> None:
        self._spawn()
        self.ready_at.append(self.wait_ready())
        self.thread.start()

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                code = self.proc.poll()
            if code is None:
                self.stopping.wait(0.1)
                continue
            if self.stopping.is_set():
                return
            self.exits.append((time.time(), code))
            self._kill_group()
            if self.stopping.wait(self.RESTART_SEC):
                return
            with self.lock:
                self._spawn()
            with contextlib.suppress(RuntimeError):
                self.ready_at.append(self.wait_ready())

    def _kill_group(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cap:
            for pid in self.cap.pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the main process (the supervisor restarts it)."""
        with self.lock:
            os.kill(self.proc.pid, sig)

    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self._kill_group()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def python_args(*args: str) -> list[str]:
    return [sys.executable, *args]


# --- a steady load ------------------------------------------------------------------------------


class PacedLoad:
    """``bench.loadgen`` sending ``rate`` messages a second from a thread until ``stop()``; each
    250's MessageID goes to ``ids_file`` with the time it came ("<id> <unix time>")."""

    def __init__(
        self, ids_file: Path, *, rate: float, concurrency: int = 10, messages=10**9, **options
    ):
        self.opts = Options(
            concurrency=concurrency,
            messages=messages,
            rate=rate,
            ids_file=str(ids_file),
            ids_times=True,
            per_connection=1,
            **options,
        )
        self.state = RunState(remaining=messages, deadline=None)
        self.result: dict | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            stats = asyncio.run(run_async(self.opts, state=self.state))
            self.result = summarize([stats], self.opts, 1)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def start(self) -> PacedLoad:
        self.thread.start()
        return self

    def stop(self) -> dict:
        self.state.stop()
        self.thread.join()
        if self.error is not None:
            raise RuntimeError(f"the load failed: {self.error!r}") from self.error
        return self.result

    def wait(self, timeout: float | None = None) -> dict | None:
        """Wait for a load of a fixed number of messages to end."""
        self.thread.join(timeout)
        if self.error is not None:
            raise RuntimeError(f"the load failed: {self.error!r}") from self.error
        return self.result


def read_acknowledged(ids_file: Path) -> dict[str, float]:
    """MessageID -> unix time of its 250, from a :class:`PacedLoad`'s ids file."""
    acked = {}
    with contextlib.suppress(FileNotFoundError):
        for line in Path(ids_file).read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                acked[parts[0].lower()] = float(parts[1])
            elif len(parts) == 1:
                acked[parts[0].lower()] = 0.0
    return acked
