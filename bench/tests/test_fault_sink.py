"""The fault matrix's relay (``python -m bench.fault_sink``) in each of its modes, driven by
smtplib, and its log read back (no Django, no database)."""

import smtplib
import subprocess
import sys
import time

import pytest

from bench.common import ROOT, free_port
from bench.fault_sink import read_log, set_mode

MESSAGE_ID = "0f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"
VERP = f"pm_bounces+{MESSAGE_ID}.1a2b3c@bounces.test"


@pytest.fixture
def sink(tmp_path):
    port, control, log = free_port(), tmp_path / "mode", tmp_path / "sink.log"
    control.write_text("ok")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fault_sink", "--port", str(port), "--log", str(log),
         "--control", str(control)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "sink ready"
    yield port, control, log
    proc.terminate()
    proc.wait(10)


def switch(control, mode: str, delay: float = 0.0) -> None:
    set_mode(control, mode, delay)
    time.sleep(0.3)  # the sink reads its control file every 50 ms


def send(port: int, timeout: float = 2.0) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as client:
        client.sendmail(VERP, ["user@example.net"], b"Subject: hi\r\n\r\nhello\r\n")


def test_each_mode_answers_as_a_failing_relay_would(sink):
    port, control, log = sink
    send(port)
    switch(control, "451")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(port)
    assert refused.value.smtp_code == 451
    switch(control, "421")
    with pytest.raises(smtplib.SMTPConnectError) as closed:
        send(port)
    assert closed.value.smtp_code == 421
    switch(control, "blackhole")
    started = time.monotonic()
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError)):
        send(port, timeout=1.0)
    assert time.monotonic() - started >= 1.0  # accepted, never greeted
    switch(control, "slow", 0.5)
    started = time.monotonic()
    send(port)
    assert time.monotonic() - started >= 0.5
    switch(control, "ok")
    send(port)
    found = read_log(log)
    assert found.copies == {MESSAGE_ID: 3}  # taken in ok, slow and ok again; never otherwise
    assert [mode for _, mode in found.modes] == ["451", "421", "blackhole", "slow", "ok"]


def test_an_open_connection_hangs_in_a_blackhole_and_counts_as_open(sink):
    port, control, log = sink
    client = smtplib.SMTP("127.0.0.1", port, timeout=1.0)
    client.ehlo("client.test")
    switch(control, "blackhole")
    moment = time.time()
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError)):
        client.noop()
    client.close()
    time.sleep(0.3)
    found = read_log(log)
    assert found.open_at(moment) == 1
    assert found.open_at(time.time()) == 0
