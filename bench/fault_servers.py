"""The private servers of the fault matrix (``bench.faults``), which a row may stop and start
without touching the machine's shared ones:

- :class:`PrivatePostgres`: a cluster of its own (``initdb`` in a temporary folder, ``pg_ctl``
  on a free loopback port);
- :class:`PrivateRabbit`: a RabbitMQ node of its own (its own node name, ports, Mnesia and log
  folders, configuration, Erlang cookie; no plugins, so no management listener).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import free_port, reachable

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
