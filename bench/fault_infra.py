"""What the fault matrix (``bench.faults``) runs its processes under (the private PostgreSQL
and RabbitMQ are in ``bench.fault_servers``):

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
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from bench.common import ROOT, proc_status_mb, process_tree
from bench.loadgen import Options, RunState, run_async, summarize

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
