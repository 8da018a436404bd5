"""What the pipeline benchmark's sections share: the load they send (sender, recipient, headers),
counts read straight from PostgreSQL while workers run (:class:`Db`), Celery worker processes that
can be SIGKILLed and replaced (:class:`Workers`), polling, queue purging, and starting sinks,
gateways and loads."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

from bench.common import (
    CELERY,
    Service,
    find_tool,
    free_port,
    start,
    start_smtp_sink,
)
from bench.common import start_gateway as start_runsmtp
from bench.loadgen import run_load
from bench.pipeline_scripts import SINK

SENDER, RECIPIENT = "app@example.com", "user@example.net"
LOAD_HEADERS = (
    "X-PM-Tag: welcome",
    "X-PM-Metadata-customer: c-1234",
    "X-PM-Metadata-order: o-98765",
    "X-PM-TrackOpens: false",
)


def purge(broker_url: str, *queues: str) -> None:
    """Empty queues of our virtual host (left-over tasks of an earlier section)."""
    from kombu import Connection

    with Connection(broker_url) as connection:
        channel = connection.default_channel
        for queue in queues:
            with contextlib.suppress(Exception):
                channel.queue_purge(queue)


# The tables :class:`Db` reads, by model.
TABLES = ("outbound.Submission", "outbound.OutboundMessage", "outbound.Recipient", "bounces.Bounce")


class Db:
    """Counts read straight from PostgreSQL (not through Django) while the workers run.

    ``tables`` maps each model of :data:`TABLES` to its table (:func:`bench.common.model_tables`);
    only those names, never outside input, are formatted into the SQL."""

    def __init__(self, url: str, tables: dict[str, str]):
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.submissions = tables["outbound.Submission"]
        self.bounce_table = tables["bounces.Bounce"]
        # Every recipient with its message, whose server_id the counts filter on.
        self.recipients = (
            f"{tables['outbound.Recipient']} r JOIN {tables['outbound.OutboundMessage']} m "
            "ON m.id = r.message_id"
        )

    def one(self, sql: str, *params):
        return self.conn.execute(sql, params).fetchone()

    def accepted(self, server: int) -> int:
        return self.one(
            f"SELECT count(*) FROM {self.submissions} WHERE server_id = %s "  # noqa: S608
            "AND status = 'accepted'",
            server,
        )[0]

    def statuses(self, server: int) -> dict:
        rows = self.conn.execute(
            f"SELECT status, count(*) FROM {self.submissions} WHERE server_id = %s "  # noqa: S608
            "GROUP BY 1",
            (server,),
        ).fetchall()
        return dict(rows)

    def delivered(self, server: int) -> int:
        return self.one(
            f"SELECT count(*) FROM {self.recipients} "  # noqa: S608
            "WHERE m.server_id = %s AND r.status = 'delivered'",
            server,
        )[0]

    def recipient_statuses(self, server: int) -> dict:
        rows = self.conn.execute(
            f"SELECT r.status, count(*) FROM {self.recipients} "  # noqa: S608
            "WHERE m.server_id = %s GROUP BY 1",
            (server,),
        ).fetchall()
        return dict(rows)

    def span(self, server: int) -> float:
        """Seconds from the first accept to the last delivered recipient."""
        first = self.one(
            f"SELECT min(received_at) FROM {self.submissions} WHERE server_id = %s",  # noqa: S608
            server,
        )[0]
        last = self.one(
            f"SELECT max(r.updated_at) FROM {self.recipients} "  # noqa: S608
            "WHERE m.server_id = %s AND r.status = 'delivered'",
            server,
        )[0]
        return (last - first).total_seconds()

    def bounces(self, server: int) -> int:
        sql = f"SELECT count(*) FROM {self.bounce_table} WHERE server_id = %s"  # noqa: S608
        return self.one(sql, server)[0]

    def close(self):
        self.conn.close()


class Workers:
    """Celery worker processes with fresh node names; ``kill`` SIGKILLs one and starts another."""

    def __init__(self, stack, env, work: Path, queues: str, pool: str, concurrency: int):
        self.stack, self.env, self.work = stack, env, work
        self.queues, self.pool, self.concurrency = queues, pool, concurrency
        self.running: list[Service] = []
        self.started = 0
        self.lock = threading.Lock()

    def start(self, wait: bool = True) -> Service:
        self.started += 1
        args = [*CELERY, "worker", "-l", "info", "-Q", self.queues, "--pool", self.pool, "-n",
                f"bench-{self.started}-{time.monotonic_ns()}@%h",
                "--without-mingle", "--without-gossip"]  # fmt: skip
        if self.pool != "solo":
            args += ["--concurrency", str(self.concurrency)]
        service = start(self.stack, f"worker-{self.started}", args, self.env, self.work)
        with self.lock:
            self.running.append(service)
        if wait:
            service.wait_for(" ready.", timeout=90)
        return service

    def kill(self, rng: random.Random) -> None:
        with self.lock:
            victim = rng.choice(self.running)
            self.running.remove(victim)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        self.start()

    def stop(self) -> None:
        with self.lock:
            running, self.running = self.running, []
        for service in running:
            service.stop()


def wait_until(predicate, timeout: float, interval: float = 0.05, stall: float | None = None,
               progress=None) -> bool:  # fmt: skip
    """Poll ``predicate`` until true; False after ``timeout`` (or ``stall`` s without progress)."""
    deadline = time.monotonic() + timeout
    last_value, last_change = None, time.monotonic()
    while time.monotonic() < deadline:
        if predicate():
            return True
        if progress is not None and stall is not None:
            value = progress()
            if value != last_value:
                last_value, last_change = value, time.monotonic()
            elif time.monotonic() - last_change > stall:
                return False
        time.sleep(interval)
    return False


def start_sink(stack, kind: str, work: Path, log_name: str):
    """Start a sink; returns (port, path of the delivery log or None)."""
    port = free_port()
    if kind == "smtp-sink":
        tool = find_tool("smtp-sink")
        if tool:
            start_smtp_sink(stack, tool, port, work)
            return port, None, "Postfix smtp-sink"
    path = work / f"{log_name}.txt"
    service = start(stack, log_name, [sys.executable, "-c", SINK, str(port), str(path)],
                    dict(os.environ), work)  # fmt: skip
    service.wait_for("sink ready", timeout=30)
    return port, path, "aiosmtpd sink (logs MAIL FROM)"


def start_gateway(stack, env, work: Path, name: str, pids: list | None = None) -> int:
    """A one-process gateway on a free port; returns the port (its pid goes into ``pids``)."""
    port = free_port()
    _, serving = start_runsmtp(stack, env, port, 1, work, name)
    if pids is not None:
        pids.extend(serving)
    return port


def load(port: int, creds: dict, messages: int, concurrency: int, ids_file=None) -> dict:
    return run_load(
        processes=1, host="127.0.0.1", port=port, user=creds["user"],
        password=creds["password"], concurrency=concurrency, messages=messages, size=1600,
        per_connection=1, headers=LOAD_HEADERS, sender=SENDER, to=RECIPIENT, ids_file=ids_file,
    )  # fmt: skip


def relay_env(env: dict, port: int, **extra) -> dict:
    return {
        **env,
        "OUTBOUND_SMTP_RELAY": f"smtp://127.0.0.1:{port}?starttls=never",
        **{k: str(v) for k, v in extra.items()},
    }
