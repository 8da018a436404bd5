"""Group commit fails no record for its neighbours: a batch the database refuses is committed
again one record at a time; only a database that cannot be reached fails a whole batch."""

import asyncio
import threading
import time
import uuid

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from messages.models import Submission
from messages.submissions import save_submissions
from smtpgw.committer import Dispatcher, GroupCommitter, RecordRefused
from streams.services import create_server


def run_in_one_batch(save_batch, records: list, after_commit=None) -> tuple[list, list]:
    """Commit ``records`` through a GroupCommitter so that they form one batch: the writer is held
    in a first, separate commit while they are queued. Returns (outcomes, batch sizes)."""
    release = threading.Event()
    sizes: list[int] = []

    def save(batch):
        sizes.append(len(batch))
        if len(sizes) == 1:
            release.wait(10)
            return
        save_batch(batch)

    committer = GroupCommitter(save, after_commit=after_commit)

    async def scenario():
        holding = asyncio.create_task(committer.commit({"hold": True}))
        while not sizes:
            await asyncio.sleep(0.005)
        waiting = [asyncio.create_task(committer.commit(record)) for record in records]
        await asyncio.sleep(0.05)
        release.set()
        await holding
        return await asyncio.gather(*waiting, return_exceptions=True)

    try:
        outcomes = asyncio.run(scenario())
    finally:
        committer.close()
    return outcomes, sizes[1:]


def test_a_refused_record_fails_alone():
    saved, committed = [], []

    def save(batch):
        if any(record == "poison" for record in batch):
            raise ValueError("cannot store this")
        saved.extend(batch)

    records = [f"ok-{i}" for i in range(20)] + ["poison"] + [f"ok-{i}" for i in range(20, 25)]
    outcomes, sizes = run_in_one_batch(save, records, after_commit=committed.extend)
    assert sizes[0] == len(records)  # one batch, then one commit per record
    assert sizes[1:] == [1] * len(records)
    assert isinstance(outcomes[20], RecordRefused)
    assert [o for i, o in enumerate(outcomes) if i != 20] == [None] * 25
    assert saved == committed[1:] == [r for r in records if r != "poison"]


def test_an_unavailable_database_fails_the_batch_without_retries():
    def save(batch):
        raise OperationalError("could not connect to server")

    outcomes, sizes = run_in_one_batch(save, ["a", "b", "c"])
    assert sizes == [3]
    assert all(isinstance(o, OperationalError) for o in outcomes)


def test_the_database_going_away_during_retries_stops_them():
    calls = []

    def save(batch):
        calls.append(list(batch))
        if len(batch) > 1:
            raise ValueError("one of them is bad")
        if batch == ["b"]:
            raise OperationalError("server closed the connection")

    outcomes, _ = run_in_one_batch(save, ["a", "b", "c", "d"])
    assert outcomes[0] is None
    assert all(isinstance(o, OperationalError) for o in outcomes[1:])
    assert ["c"] not in calls and ["d"] not in calls


def row(server, **values) -> dict:
    return {
        "message_id": uuid.uuid4(),
        "server_id": server.id,
        "endpoint": "transactional",
        "credential_kind": "smtp_token",
        "credential": "key",
        "client_address": "127.0.0.1",
        "mail_from": "app@example.com",
        "rcpt_to": ["user@example.net"],
        "size": 5,
        "raw": b"hello",
        "status": Submission.Status.ACCEPTED,
        "received_at": timezone.now(),
        **values,
    }


def poison_rows(server) -> list[dict]:
    rows = [row(server, mail_from="\udcff@example.com")]
    if connection.vendor == "postgresql":  # SQLite holds these (JSON escapes, no lengths)
        rows += [
            row(server, rcpt_to=["\udcfe@example.net"]),
            row(server, mail_from="a" * 400 + "@example.com"),
            row(server, mail_from="a\x00b@example.com"),
            row(server, rcpt_to=["a\x00b@example.net"]),
        ]
    return rows


@pytest.mark.django_db(transaction=True)
def test_real_batch_with_rows_the_database_refuses():
    """save_submissions on this database: the good rows of a batch are stored, each row the
    database cannot hold fails with RecordRefused (a 5xx for its client, not a 451 for all)."""
    server = create_server("Committer")
    good = [row(server) for _ in range(20)]
    poison = poison_rows(server)
    records = good[:10] + poison + good[10:]
    outcomes, sizes = run_in_one_batch(save_submissions, records)
    assert sizes[0] == len(records)
    for record, outcome in zip(records, outcomes, strict=True):
        if record in poison:
            assert isinstance(outcome, RecordRefused), record
        else:
            assert outcome is None, outcome
    stored = set(Submission.objects.values_list("message_id", flat=True))
    assert stored == {record["message_id"] for record in good}


def test_a_dispatch_interval_of_zero_or_less_does_not_spin():
    """SMTP_DISPATCH_INTERVAL set to 0 (or below) still hands items over, without a busy loop."""
    published = []
    dispatcher = Dispatcher(published.append, interval=-1)
    try:
        dispatcher.add(["a", "b"])
        cpu = time.process_time()
        time.sleep(0.3)
        assert published == [["a", "b"]]
        assert time.process_time() - cpu < 0.15  # a spinning thread would use about 0.3 s
    finally:
        dispatcher.close()
