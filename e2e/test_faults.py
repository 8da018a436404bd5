"""The fault matrix's short form (the full one is ``python -m bench.faults``, in ``make bench``): a
real gateway and a real worker (with its embedded beat) relay a steady load to
``bench.fault_sink`` on the suite's database, while the relay answers 451 or hangs, or the worker
is SIGKILLed mid-run. Every acknowledged message (each 250's MessageID) must reach the relay, none
may fail, and a copy may be sent twice only by a transaction open at the fault.

Rows of the full matrix that wait for other parts of issue 23 are left out here: a blackhole of
production size (stale claims: part 1), a worker killed by the OOM killer on a large batch
(bounded processing: part 2), a DNS flap (part 3), PostgreSQL restarted (one taxonomy of database
errors: part 4; also the gateway's 500 at MAIL while the database is away)."""

import signal
import time
from collections import Counter

import pytest

from bench.common import CELERY
from bench.fault_infra import PacedLoad, Supervised, read_acknowledged
from bench.fault_sink import read_log, set_mode
from conftest import free_port, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RATE = 10.0  # messages a second
WARMUP = 2.0
AFTER = 2.0  # load after the fault
SETTLE = 45.0  # at most, for every acknowledged message to settle


@pytest.fixture
def fault_sink(start_process, tmp_path):
    port, control, log = free_port(), tmp_path / "mode", tmp_path / "sink.log"
    control.write_text("ok")
    process = start_process(["-m", "bench.fault_sink", "--port", str(port), "--log", str(log),
                             "--control", str(control)], name="sink")  # fmt: skip
    process.wait_for("sink ready")
    return port, control, log


def start_worker(tmp_path, sink_port: int) -> Supervised:
    """A worker relaying to the sink, short timeouts (a dead worker's recipients are in doubt for
    4 s), and the beat's sweep every second: on the embedded queue a killed worker's task is gone,
    and the sweep finds its work."""
    env = subprocess_env(
        CELERY_BROKER_URL="",
        OUTBOUND_SMTP_RELAY=f"smtp://127.0.0.1:{sink_port}?starttls=never",
        OUTBOUND_TIMEOUT=1,
        DELIVERY_RETRY_BASE=1,
        DELIVERY_RETRY_MAX=4,
        SWEEP_AFTER_SECONDS=3,
        SWEEP_INTERVAL_SECONDS=1,
    )
    args = [*CELERY, "worker", "-B", "-s", str(tmp_path / "beat-schedule"), "-l", "info",
            "--pool", "threads", "--concurrency", "4"]  # fmt: skip
    worker = Supervised("worker", args, env, tmp_path, " ready.")
    worker.start()
    return worker


def relay_fault(mode: str, seconds: float):
    def fault(control, worker) -> None:
        set_mode(control, mode)
        time.sleep(seconds)
        set_mode(control, "ok")

    return fault


def worker_killed(control, worker) -> None:
    """Mid-transaction: the relay takes each message 0.3 s before its 250, so the worker's
    threads are in the middle of one when it dies."""
    set_mode(control, "slow", 0.3)
    time.sleep(1.0)
    worker.kill(signal.SIGKILL)  # the supervisor starts another 2 s later
    time.sleep(4.0)
    set_mode(control, "ok")


def settled(acked: set[str]) -> tuple[bool, dict]:
    """Whether every acknowledged message has a final state, and each one's states."""
    from messages.models import Recipient, Submission

    states = {i: "no record" for i in acked}
    states.update(
        (str(m), f"submission {s}")
        for m, s in Submission.objects.filter(message_id__in=acked).values_list(
            "message_id", "status"
        )
    )
    states.update(
        (str(m), f"recipient {s}")
        for m, s in Recipient.objects.filter(message__message_id__in=acked).values_list(
            "message__message_id", "status"
        )
    )
    final = ("recipient delivered", "recipient failed", "recipient bounced", "submission failed")
    return all(state in final for state in states.values()), states


@pytest.mark.parametrize(
    "fault",
    [relay_fault("451", 10.0), relay_fault("blackhole", 10.0), worker_killed],
    ids=["relay answering 451 for 10 s", "relay blackholed for 10 s", "worker SIGKILLed"],
)
def test_no_acknowledged_message_is_lost_or_failed(fault, gateway, creds, fault_sink, tmp_path):
    from domains.models import Domain
    from servers.models import DeliveryType

    creds.server.delivery_type = DeliveryType.LIVE
    creds.server.save()
    # The sender's domain has no DNS records anywhere: the beat's periodic re-check must leave it
    # alone (with a schedule file saying it last ran long ago, it runs at once).
    Domain.objects.filter(name="example.com").update(periodic_checks=False)
    sink_port, control, sink_log = fault_sink
    worker = start_worker(tmp_path, sink_port)
    ids_file = tmp_path / "ids"
    load = PacedLoad(ids_file, rate=RATE, concurrency=4, size=1200, host="127.0.0.1",
                     port=gateway.port, user=creds.access_key, password=creds.secret,
                     sender="app@example.com", to="user@example.net", timeout=30.0)  # fmt: skip
    try:
        load.start()
        time.sleep(WARMUP)
        fault_start = time.time()
        fault(control, worker)
        time.sleep(AFTER)
        accept = load.stop()
        acked = set(read_acknowledged(ids_file))
        deadline = time.monotonic() + SETTLE
        while not (done := settled(acked))[0] and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        load.state.stop()
        worker.stop()
    final, states = done
    log = read_log(sink_log)
    copies = log.copies
    assert accept["messages_failed"] == 0, accept["errors"]
    assert len(acked) >= RATE * (WARMUP + AFTER)
    assert final, Counter(states.values())
    from bounces.models import Bounce

    why = list(Bounce.objects.filter(message_id__in=acked).values_list("type", "details")[:3])
    assert Counter(states.values()) == {"recipient delivered": len(acked)}, why  # 0 failed
    assert not acked - set(copies)  # 0 lost: every acknowledged message reached the relay
    window = log.open_at(fault_start) + sum(
        log.open_at(when, before=1.0) for when, _ in worker.exits
    )
    extra = sum(copies[i] - 1 for i in acked if copies[i] > 1)
    assert extra <= window, (extra, window)
    if fault is worker_killed:
        assert len(worker.exits) == 1 and len(worker.ready_at) == 2
