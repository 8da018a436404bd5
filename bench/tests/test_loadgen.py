"""Tests of the SMTP load generator against the aiosmtpd sink (no Django, no database)."""

import email
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid

import pytest
from aiosmtpd.controller import Controller

from bench.common import ROOT, free_port
from bench.loadgen import dot_stuff, make_body, percentile, run_load


def start_sink(*args: str) -> tuple[subprocess.Popen, int]:
    """Start ``python -m bench.sink`` on a free port and wait for ``ready``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sink", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], 0.2)
        if readable and proc.stdout.readline().strip() == b"ready":
            return proc, port
        if proc.poll() is not None:
            break
    stop_sink(proc)
    raise RuntimeError(f"sink {args} did not start")


def stop_sink(proc: subprocess.Popen) -> None:
    """SIGTERM the sink's process group; SIGKILL it if it does not exit."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    finally:
        proc.stdout.close()


@pytest.fixture(scope="module")
def sink_factory():
    """Start sinks by argument list, each once per module; stop them all at teardown."""
    started: dict[tuple[str, ...], tuple[subprocess.Popen, int]] = {}

    def get(*args: str) -> int:
        if args not in started:
            started[args] = start_sink(*args)
        return started[args][1]

    yield get
    for proc, _ in started.values():
        stop_sink(proc)


def assert_all_ok(result: dict, count: int) -> None:
    assert result["messages_ok"] == count, result
    assert result["messages_failed"] == 0
    assert result["errors"] == {}
    assert result["messages_per_second"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["seconds"] > 0


def test_plain(sink_factory):
    result = run_load(port=sink_factory(), messages=200, concurrency=10)
    assert_all_ok(result, 200)
    assert result["connections"] == 200


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth(sink_factory, mechanism):
    port = sink_factory("--auth")
    result = run_load(
        port=port, user="u", password="p", auth=mechanism, messages=200, concurrency=10
    )
    assert_all_ok(result, 200)


def test_starttls_auth(sink_factory):
    port = sink_factory("--auth", "--starttls")
    result = run_load(
        port=port, user="u", password="p", starttls=True, messages=200, concurrency=10
    )
    assert_all_ok(result, 200)


def test_implicit_tls(sink_factory):
    port = sink_factory("--auth", "--tls")
    result = run_load(port=port, user="u", password="p", tls=True, messages=50, concurrency=5)
    assert_all_ok(result, 50)


def test_two_processes_each_side(sink_factory):
    port = sink_factory("--auth", "--processes", "2")
    result = run_load(port=port, user="u", password="p", messages=200, concurrency=10, processes=2)
    assert_all_ok(result, 200)
    assert result["processes"] == 2


def test_per_connection(sink_factory):
    result = run_load(port=sink_factory(), messages=200, concurrency=10, per_connection=5)
    assert_all_ok(result, 200)
    assert result["connections"] == 40


def test_ids_file(sink_factory, tmp_path):
    ids_file = tmp_path / "ids.txt"
    result = run_load(port=sink_factory(), messages=200, concurrency=10, ids_file=str(ids_file))
    assert_all_ok(result, 200)
    ids = ids_file.read_text().splitlines()
    assert len(ids) == len(set(ids)) == 200
    assert all(uuid.UUID(line) for line in ids)


def test_ids_file_two_processes(sink_factory, tmp_path):
    ids_file = tmp_path / "ids.txt"
    result = run_load(
        port=sink_factory(), messages=100, concurrency=4, processes=2, ids_file=str(ids_file)
    )
    assert_all_ok(result, 100)
    assert len(set(ids_file.read_text().splitlines())) == 100


def test_connection_refused_counts_failures():
    result = run_load(port=free_port(), messages=20, concurrency=5)
    assert result["messages_ok"] == 0
    assert result["messages_failed"] == 20
    assert result["errors"] == {"ConnectionRefusedError": 20}


def test_auth_rejected_counts_failures(sink_factory):
    # Without --auth the sink does not offer AUTH on a plain connection.
    result = run_load(port=sink_factory(), user="u", password="p", messages=10, concurrency=2)
    assert result["messages_ok"] == 0
    assert result["messages_failed"] == 10
    assert all(kind.startswith("AUTH 5") for kind in result["errors"]), result["errors"]


def test_duration_cap(sink_factory):
    started = time.monotonic()
    result = run_load(port=sink_factory(), messages=10**9, concurrency=5, duration=0.5)
    assert time.monotonic() - started < 5
    assert result["messages_ok"] > 0
    assert result["messages_failed"] == 0


def test_cli_json(sink_factory):
    port = sink_factory("--auth")
    command = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--json"]
    command += ["--user", "u", "--password", "p", "--messages", "20", "--concurrency", "4"]
    output = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=30)
    assert output.returncode == 0, output.stderr
    result = json.loads(output.stdout)
    assert result["messages_ok"] == 20


class CaptureHandler:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued as abc-123"


def test_message_format():
    handler = CaptureHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        result = run_load(
            port=controller.port,
            messages=3,
            concurrency=1,
            size=1000,
            recipients=3,
            headers=["X-PM-Message-Stream: outbound"],
        )
    finally:
        controller.stop()
    assert_all_ok(result, 3)
    assert len(handler.envelopes) == 3
    envelope = handler.envelopes[0]
    assert envelope.rcpt_tos == ["rcpt+1@example.com", "rcpt+2@example.com", "rcpt+3@example.com"]
    message = email.message_from_bytes(envelope.content)
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert message[header]
    assert message["X-PM-Message-Stream"] == "outbound"
    body = message.get_payload(decode=True)
    assert body == make_body(1000)  # dot-stuffing undone by the server
    assert body.startswith(b". this line")
    message_ids = {email.message_from_bytes(e.content)["Message-ID"] for e in handler.envelopes}
    assert len(message_ids) == 3


def test_dot_stuff():
    assert dot_stuff(b".a\n..b\nc") == b"..a\r\n...b\r\nc\r\n"
    assert dot_stuff(b"x\r\n.\r\n") == b"x\r\n..\r\n"
    assert dot_stuff(b"") == b""


def test_make_body_size():
    for size in (0, 1, 2, 100, 2048, 5000):
        body = make_body(size)
        assert len(body) == size
        assert size < 2 or body.endswith(b"\r\n")


def test_percentile():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([], 50) == 0.0


def test_rate_paces_the_load(sink_factory, tmp_path):
    ids_file = tmp_path / "ids.txt"
    started = time.monotonic()
    result = run_load(port=sink_factory(), messages=30, concurrency=5, rate=20.0,
                      ids_file=str(ids_file), ids_times=True)  # fmt: skip
    assert_all_ok(result, 30)
    assert time.monotonic() - started >= 29 / 20.0  # not faster than asked
    times = sorted(float(line.split()[1]) for line in ids_file.read_text().splitlines())
    assert len(times) == 30 and times[-1] - times[0] >= 1.3


def test_a_run_is_stopped_from_another_thread(sink_factory):
    import asyncio
    import threading

    from bench.loadgen import Options, RunState, run_async

    opts = Options(port=sink_factory(), messages=10**9, concurrency=3, rate=50.0)
    state = RunState(remaining=opts.messages, deadline=None)
    threading.Timer(0.5, state.stop).start()
    started = time.monotonic()
    stats = asyncio.run(run_async(opts, state=state))
    assert time.monotonic() - started < 3
    assert 0 < stats.ok <= 50 and stats.failed == 0
