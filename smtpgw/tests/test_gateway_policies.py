"""Gateway behaviour under its settings and under failure: throttling, TLS policy, timeouts,
connection caps, a database that goes away, shutdown, and several processes on one port."""

import base64
import contextlib
import json
import os
import signal
import smtplib
import socket
import sqlite3
import sys
import threading
import time
import uuid

import pytest
from django.db import connection

from conftest import (
    MESSAGE,
    Gateway,
    Process,
    free_port,
    insecure,
    queued_id,
    send,
    start_gateway,
    subprocess_env,
)
from messages.models import Submission

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gateway_with(tmp_path):
    started = []

    def start(**env):
        running = start_gateway(tmp_path / f"runsmtp-{len(started)}.log", **env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.process.stop()


def test_repeated_failures_are_throttled(gateway_with, creds):
    gateway = gateway_with(SMTP_AUTH_FAILURE_LIMIT=3, SMTP_AUTH_FAILURE_WINDOW=300)
    client = gateway.smtp()
    for _ in range(3):
        code, _ = client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, "wrong"))
        assert code == 535
    code, reply = client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, creds.secret))
    assert code == 421
    assert reply.startswith(b"4.7.0")
    # New connections from the address are turned away too, even with the right secret.
    with pytest.raises(smtplib.SMTPConnectError) as info:
        smtplib.SMTP("127.0.0.1", gateway.port, timeout=10)
    assert info.value.smtp_code == 421


def test_plain_auth_can_require_tls(gateway_with, creds):
    gateway = gateway_with(SMTP_REQUIRE_TLS_FOR_PLAIN_AUTH="true")
    client = gateway.smtp()
    assert client.esmtp_features["auth"].split() == ["CRAM-MD5", "DIGEST-MD5"]
    code, reply = client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, creds.secret))
    assert code == 538
    client.user, client.password = creds.access_key, creds.secret
    assert client.auth("CRAM-MD5", client.auth_cram_md5)[0] == 235
    client.quit()

    client = gateway.smtp()
    client.starttls(context=insecure())
    client.ehlo("client.example")
    assert "PLAIN" in client.esmtp_features["auth"]
    client.login(creds.access_key, creds.secret)
    assert send(client)


def test_idle_connections_are_closed(gateway_with):
    gateway = gateway_with(SMTP_IDLE_TIMEOUT=1)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        file = sock.makefile("rb")
        assert file.readline().startswith(b"220")
        started = time.monotonic()
        assert file.readline().startswith(b"421 4.4.2")
        assert file.readline() == b""  # closed
        assert 0.5 < time.monotonic() - started < 5


def test_connection_caps(gateway_with):
    gateway = gateway_with(SMTP_MAX_CONNECTIONS_PER_ADDRESS=3)
    open_ones = [smtplib.SMTP("127.0.0.1", gateway.port, timeout=10) for _ in range(3)]
    with pytest.raises(smtplib.SMTPConnectError) as info:
        smtplib.SMTP("127.0.0.1", gateway.port, timeout=10)
    assert info.value.smtp_code == 421
    assert b"Too many connections from your address" in info.value.smtp_error
    open_ones.pop().quit()
    time.sleep(0.2)
    smtplib.SMTP("127.0.0.1", gateway.port, timeout=10).quit()
    for client in open_ones:
        client.quit()


class TcpProxy:
    """A loopback TCP relay that a test can cut, to take the database away from the gateway."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self):
        self.open = False
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.sockets = []

    def restore(self):
        self.open = True

    def close(self):
        self.cut()
        self.listener.close()


def test_database_down_gives_451_and_recovers(gateway_with, creds):
    """Nothing is acknowledged that is not committed: with the database gone the client hears
    451 and retries; once it is back, mail flows again."""
    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        proxy = TcpProxy(int(settings_dict.get("PORT") or 5432))
        user = settings_dict.get("USER") or "postgres"
        url = f"postgres://{user}@127.0.0.1:{proxy.port}/{settings_dict['NAME']}"
        gateway = gateway_with(SMTP_AUTH_CACHE_SECONDS=600, DATABASE_URL=url, CONN_MAX_AGE=600)
        take_down, bring_back = proxy.cut, proxy.restore
    else:
        # SQLite: another process holds the write lock longer than the gateway will wait.
        gateway = gateway_with(SMTP_AUTH_CACHE_SECONDS=600, SQLITE_TIMEOUT=1)
        locker = sqlite3.connect(settings_dict["NAME"], timeout=5, isolation_level=None)
        take_down = lambda: locker.execute("BEGIN EXCLUSIVE")  # noqa: E731
        bring_back = lambda: locker.execute("COMMIT")  # noqa: E731
    try:
        client = gateway.smtp()
        client.login(creds.access_key, creds.secret)
        first = send(client)
        take_down()
        client.mail("app@example.com")
        client.rcpt("user@example.net")
        code, reply = client.data(MESSAGE)
        assert code == 451, reply
        assert reply.startswith(b"4.3.0")
        bring_back()
        second = send(client)
        client.quit()
    finally:
        if connection.vendor == "postgresql":
            proxy.close()
    assert set(Submission.objects.values_list("message_id", flat=True).iterator()) == {
        _uuid(first),
        _uuid(second),
    }


def test_database_down_at_mail_from_is_temporary(gateway_with, creds):
    """MAIL FROM reads the server's sending limits from the database: with the database gone the
    answer is a temporary 451 (the client retries), never aiosmtpd's permanent 500. (SQLite in
    WAL mode keeps serving reads under a writer's lock, so this runs on PostgreSQL; the reply
    itself is held on both by test_transaction's handle_exception test.)"""
    if connection.vendor != "postgresql":
        pytest.skip("reads cannot be made to fail on the SQLite default from outside")
    settings_dict = connection.settings_dict
    proxy = TcpProxy(int(settings_dict.get("PORT") or 5432))
    user = settings_dict.get("USER") or "postgres"
    url = f"postgres://{user}@127.0.0.1:{proxy.port}/{settings_dict['NAME']}"
    gateway = gateway_with(
        SMTP_AUTH_CACHE_SECONDS=600,
        SMTP_SENDING_LIMIT_CACHE_SECONDS=0,
        DATABASE_URL=url,
        CONN_MAX_AGE=600,
    )
    try:
        client = gateway.smtp()
        client.login(creds.access_key, creds.secret)
        first = send(client)
        proxy.cut()
        try:
            code, reply = client.mail("app@example.com")
        finally:
            proxy.restore()
        assert code == 451, reply
        assert reply.startswith(b"4.3.0")
        client.rset()
        # The writer's connection died in the cut too: its first commit may answer 451 once
        # (the client's retry), then mail flows.
        for _ in range(3):
            client.mail("app@example.com")
            client.rcpt("user@example.net")
            code, reply = client.data(MESSAGE)
            if code != 451:
                break
        assert code == 250, reply
        second = queued_id(reply)
        client.quit()
    finally:
        proxy.close()
    assert {_uuid(first), _uuid(second)} <= set(
        Submission.objects.values_list("message_id", flat=True).iterator()
    )


def test_sigterm_finishes_the_transaction_in_flight(gateway_with, creds):
    gateway = gateway_with(SMTP_SHUTDOWN_GRACE=10)
    busy = gateway.smtp()
    busy.login(creds.access_key, creds.secret)
    busy.mail("app@example.com")
    busy.rcpt("user@example.net")
    idle = gateway.smtp()
    gateway.process.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # The idle session was told that the service is going away ...
    with pytest.raises(smtplib.SMTPServerDisconnected):
        idle.noop()
        idle.noop()
    # ... while the one inside a transaction may finish it.
    code, reply = busy.data(MESSAGE)
    assert code == 250
    assert Submission.objects.filter(message_id=_uuid(queued_id(reply))).exists()
    assert gateway.process.proc.wait(15) == 0


def test_several_processes_share_the_port(creds, tmp_path):
    port = free_port()
    process = Process(
        [
            sys.executable,
            "manage.py",
            "runsmtp",
            "--processes",
            "2",
            "--listen",
            f"transactional=127.0.0.1:{port}",
        ],
        subprocess_env(SMTP_AUTH_CACHE_SECONDS=0),
        tmp_path / "multi.log",
    )
    try:
        deadline = time.monotonic() + 30
        while process.output().count("SMTP gateway ready") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.output().count("SMTP gateway ready") == 2, process.output()
        running = Gateway(process, port, 0, 0)
        ids = set()
        for _ in range(20):
            client = running.smtp()
            client.login(creds.access_key, creds.secret)
            ids.add(_uuid(send(client)))
            client.quit()
        assert set(Submission.objects.values_list("message_id", flat=True)) == ids
        pids = {
            line.split("pid ")[1].split(")")[0]
            for line in process.output().splitlines()
            if "SMTP gateway ready" in line
        }
        assert len(pids) == 2
    finally:
        assert process.stop() == 0


def test_kill_9_loses_no_acknowledged_message(gateway_with, creds, tmp_path):
    """Every message that got a 250 is in the database, even when the gateway dies mid-run."""
    from bench.loadgen import run_load

    gateway = gateway_with()
    ids_file = tmp_path / "acked.txt"
    result = {}

    def load():
        result.update(
            run_load(
                host="127.0.0.1",
                port=gateway.port,
                user=creds.access_key,
                password=creds.secret,
                concurrency=20,
                messages=100_000,
                size=2048,
                ids_file=str(ids_file),
                duration=4,
                timeout=5,
            )
        )

    thread = threading.Thread(target=load)
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ids_file.exists() and len(ids_file.read_text().splitlines()) >= 200:
            break
        time.sleep(0.05)
    os.kill(gateway.process.proc.pid, signal.SIGKILL)
    thread.join(30)
    acked = {_uuid(line) for line in ids_file.read_text().split() if line}
    assert len(acked) >= 200, json.dumps(result)
    assert result["messages_failed"] > 0  # the kill really happened mid-run
    stored = set(Submission.objects.values_list("message_id", flat=True).iterator())
    assert acked <= stored, f"{len(acked - stored)} acknowledged message(s) lost"


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _uuid(text: str):
    return uuid.UUID(text.strip())
