"""Bounded processing: a try is counted when it is taken, so a submission whose processing kills
its worker (the OOM killer, a crash) fails after PROCESSING_ATTEMPTS tries with an SMTPApiError
instead of being taken again for ever, and the rest of its batch goes on; and a batch is processed
in sub-batches of at most PROCESSING_BATCH_BYTES of raw messages."""

import time
import tracemalloc

import pytest

from bounces.models import Bounce
from conftest import MESSAGE, accepted_submission, send, start_gateway, subprocess_env
from delivery import tasks as delivery_tasks
from messages import processing, tasks, tries
from messages.models import OutboundMessage, Submission
from messages.tests.dying_worker import MARKER

TERMINAL = {Submission.Status.PROCESSED, Submission.Status.FAILED}
KILLER = MARKER.strip() + b" yes\r\n" + MESSAGE
HONEST = 5


def statuses(ids) -> dict:
    rows = Submission.objects.filter(message_id__in=ids).values_list("message_id", "status")
    return {str(message_id): status for message_id, status in rows}


# --- Through the gateway and a real worker whose process is killed ------------------------------

# (where the message kills its worker, the worker's pool and threads, how many batches of six,
# how many times it is killed, whether the SMTPApiError's dump holds the message as received)
KILLS = {
    # A prefork worker's parent survives its child and hands the task back to the broker
    # (task_reject_on_worker_lost): before, the batch came back and killed the next child for ever.
    "inside the transaction, prefork": ("transaction", "prefork", 1, 1, 3, True),
    # Killed while its header is parsed, before any transaction: recording its failure with the
    # message parses it again and kills once more; then the error is recorded alone.
    "while parsing, prefork": ("parsing", "prefork", 1, 1, 4, False),
    # The whole worker process dies (threads pool, as deployed), with the batches of its other
    # threads: its tasks are gone with it (the embedded broker had handed them over); the sweep
    # queues the submissions again once their lease runs out.
    "inside the transaction, 4 threads": ("transaction", "threads", 4, 4, 3, True),
}


@pytest.mark.parametrize(
    "where, pool, concurrency, batches, kills, whole_dump", KILLS.values(), ids=KILLS.keys()
)
@pytest.mark.django_db(transaction=True)
def test_a_message_that_kills_its_worker_fails_and_its_batch_goes_on(
    creds, start_process, tmp_path, where, pool, concurrency, batches, kills, whole_dump
):
    # The gateway hands over each six messages as one task (SMTP_COMMIT_BATCH of them at once).
    gateway = start_gateway(
        tmp_path / "runsmtp.log", SMTP_COMMIT_BATCH=HONEST + 1, SMTP_DISPATCH_INTERVAL=600
    )
    try:
        client = gateway.smtp()
        client.login(creds.access_key, creds.secret)
        ids = [send(client, MESSAGE, [f"h{i}@example.net"]) for i in range(2)]
        killer = send(client, KILLER, ["k1@example.net", "k2@example.net"])
        ids += [send(client, MESSAGE, [f"h{i}@example.net"])
                for i in range(2, HONEST + (batches - 1) * (HONEST + 1))]  # fmt: skip
        client.quit()
    finally:
        gateway.process.stop()
    everything = [*ids, killer]

    def start_worker():
        return start_process(
            [
                "-m", "messages.tests.dying_worker", where, "-l", "info", "-Q", "processing",
                "--pool", pool, "--concurrency", str(concurrency),
            ],
            env=subprocess_env(CELERY_BROKER_URL="", SWEEP_AFTER_SECONDS=1),
            name="worker",
        )  # fmt: skip

    workers = [start_worker()]
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if set(statuses(everything).values()) <= TERMINAL:
            break
        if workers[-1].proc.poll() is not None:  # the whole worker died: a new one, a sweep
            time.sleep(1.1)  # the lease of the killed try runs out
            tasks.requeue_stuck_submissions(older_than_seconds=0)
            workers.append(start_worker())
        time.sleep(0.2)
    logs = "".join(worker.output() for worker in workers)
    for worker in workers:
        worker.stop()

    final = statuses(everything)
    assert final == {**{i: "processed" for i in ids}, killer: "failed"}, logs[-3000:]
    if pool == "prefork":
        assert logs.count("exited with 'signal 9 (SIGKILL)'") == kills
    else:
        assert len(workers) == kills + 1
    poison = Submission.objects.get(message_id=killer)
    assert (poison.attempts, poison.last_error) == (kills + 1, "WorkerLostError")
    assert (
        max(Submission.objects.filter(message_id__in=ids).values_list("attempts", flat=True)) <= 2
    )
    errors = Bounce.objects.filter(message_id=killer).order_by("email")
    assert [(e.type, e.email) for e in errors] == [
        ("SMTPApiError", "k1@example.net"), ("SMTPApiError", "k2@example.net")
    ]  # fmt: skip
    for error in errors:
        assert error.dump_text.startswith("ErrorCode: 500\r\n")
        assert "could not be processed (WorkerLostError)" in error.details
        assert (b"X-Test-Kill-Worker" in error.dump_text.encode()) is whole_dump
    assert (bytes(poison.raw) != b"") is not whole_dump  # else it stays for the operators
    assert OutboundMessage.objects.filter(message_id__in=ids).count() == len(ids)
    assert tasks.requeue_stuck_submissions(older_than_seconds=0) == 0  # all terminal


# --- In the worker's own process ----------------------------------------------------------------


class Killed(BaseException):
    """Stands for the worker's death: no ``except Exception`` of the product catches it."""


def message(*headers: bytes, body: bytes = b"Hello.\r\n") -> bytes:
    return (
        b"From: App <app@example.com>\r\nTo: ann@example.net\r\nSubject: Hello\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
        + body
    )


@pytest.mark.parametrize("killers", [[2], [0, 4], [5]])
@pytest.mark.django_db
def test_tries_that_die_end_the_killer_alone(server, monkeypatch, settings, killers):
    """Each run of the task stands for a delivery of the same task after its worker died (a
    prefork worker's parent hands it back to the broker; a new worker gets it from the sweep)."""
    settings.PROCESSING_ATTEMPTS = 3
    monkeypatch.setattr(delivery_tasks, "enqueue_deliveries", lambda ids: None)
    batch = [accepted_submission(server, message(), [f"u{i}@example.net"]) for i in range(6)]
    killer_pks = {batch[i].pk for i in killers}
    original = processing.outbound_message

    def outbound_message(submission, *args):
        if submission.pk in killer_pks:
            raise Killed()
        return original(submission, *args)

    monkeypatch.setattr(processing, "outbound_message", outbound_message)
    ids = [str(s.message_id) for s in batch]
    deaths = 0
    for _ in range(20):
        try:
            tasks.process_submissions(ids)
            break
        except Killed:
            deaths += 1
    else:
        pytest.fail("the batch was taken again and again")
    outcome = {s.pk: (s.status, s.attempts, s.last_error) for s in Submission.objects.all()}
    for pk, (status, attempts, last_error) in outcome.items():
        if pk in killer_pks:
            assert (status, attempts, last_error) == ("failed", 4, "WorkerLostError")
        else:
            assert (status, last_error) == ("processed", "") and attempts <= 2
    assert deaths == 3 * len(killers) - (len(killers) - 1)  # after the first, one death each try
    assert Bounce.objects.filter(type="SMTPApiError").count() == len(killers)


@pytest.mark.parametrize(
    "sizes, limit, expected",
    [
        ([(1, 10), (2, 10), (3, 10)], 25, [[1, 2], [3]]),
        ([(1, 10), (2, 15), (3, 10)], 25, [[1, 2], [3]]),
        ([(1, 30), (2, 5), (3, 5)], 25, [[1], [2, 3]]),  # larger than the cap: alone
        ([(1, 5), (2, 30), (3, 5)], 25, [[1], [2], [3]]),
        ([(pk, 1) for pk in range(600)], 10**9, [list(range(256)), list(range(256, 512)),
                                                list(range(512, 600))]),
        ([], 25, []),
    ],
)  # fmt: skip
def test_sub_batches_are_capped_by_bytes_and_count(sizes, limit, expected):
    assert tries.sub_batches(sizes, limit) == expected


MB = 1024 * 1024


@pytest.mark.django_db
def test_a_batch_over_the_byte_cap_is_processed_in_sub_batches(server, monkeypatch, settings):
    """Processing read every raw message of a batch at once (the gateway's 256 of up to 10 MB,
    in each of a worker's threads). Now a batch is processed in sub-batches of at most
    PROCESSING_BATCH_BYTES of raw messages: what is loaded at once, and the memory at its peak,
    follow the cap and not the batch."""
    settings.PROCESSING_BATCH_BYTES = 4 * MB
    monkeypatch.setattr(delivery_tasks, "enqueue_deliveries", lambda ids: None)
    body = (b"x" * 998 + b"\r\n") * 1000  # 1 MB
    batch = [
        accepted_submission(server, message(body=body), [f"u{i}@example.net"]) for i in range(24)
    ]
    loaded, original = [], tasks.prepare

    def prepare(pks):
        prepared = original(pks)
        loaded.append(sum(len(item.raw) for item in prepared.values()))
        return prepared

    monkeypatch.setattr(tasks, "prepare", prepare)
    tracemalloc.start()
    try:
        tasks.process_submissions([str(s.message_id) for s in batch])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert set(Submission.objects.values_list("status", flat=True)) == {"processed"}
    assert len(loaded) == 6 and max(loaded) <= 4 * MB and sum(loaded) == sum(s.size for s in batch)
    assert peak < 3 * 4 * MB, f"{peak / MB:.1f} MB at the peak"  # 47 MB before


def test_a_submission_taken_again_is_processed_alone_in_its_process():
    """A worker with a pool of threads dies whole: while one thread processes a submission taken
    again, no other thread of the process processes anything, so that a death then counts
    against that submission alone; and work arriving meanwhile waits for it."""
    import threading

    gate, events = tries.Gate(), []
    first_in, release_first = threading.Event(), threading.Event()

    def together(name, started=None, release=None):
        with gate.together():
            events.append(f"{name} in")
            if started:
                started.set()
                release.wait(5)
            events.append(f"{name} out")

    def alone():
        with gate.alone():
            events.append("alone in")
            time.sleep(0.05)
            events.append("alone out")

    threads = [threading.Thread(target=together, args=("first", first_in, release_first))]
    threads[0].start()
    first_in.wait(5)
    threads.append(threading.Thread(target=alone))
    threads[1].start()
    time.sleep(0.05)  # the submission taken again waits for the set under way
    threads.append(threading.Thread(target=together, args=("second",)))
    threads[2].start()
    time.sleep(0.05)  # and what arrives after it waits for it
    assert events == ["first in"]
    release_first.set()
    for thread in threads:
        thread.join(5)
    assert events == ["first in", "first out", "alone in", "alone out", "second in", "second out"]


@pytest.mark.django_db
def test_the_admin_shows_the_tries_and_what_ended_the_last(admin_client, server, monkeypatch):
    from django.urls import reverse

    monkeypatch.setattr(delivery_tasks, "enqueue_deliveries", lambda ids: None)
    ok = accepted_submission(server, message(), ["a@example.net"])
    dead = accepted_submission(server, message(), ["b@example.net"], attempts=3)
    tasks.process_submissions([str(ok.message_id), str(dead.message_id)])
    for submission, tries_shown, error in ((ok, 1, None), (dead, 4, "WorkerLostError")):
        url = reverse("admin:outbound_submission_change", args=[submission.pk])
        page = admin_client.get(url).content.decode()
        assert "Attempts:" in page and f'<div class="readonly">{tries_shown}</div>' in page
        assert "1 for a submission processed at once" in page
        assert "Last error:" in page and (error is None or error in page)
