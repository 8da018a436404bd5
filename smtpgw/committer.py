"""Group commit: one writer thread commits whatever submissions are waiting, together.

Sessions hand their submission to ``GroupCommitter.commit`` and await it; the writer thread takes
everything queued since its last commit and saves it in one database transaction, so durability
costs one fsync per batch rather than one per message, and the event loop never waits on the
database.

Batching is for speed, never for failure: when the database refuses a batch because of what is in
it, each record is committed again on its own, so only the record at fault fails (with
:class:`RecordRefused`) and the others are stored. When the database is unavailable, every record
of the batch fails with the database's error, for the sessions to answer 451.
"""

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable

import psycopg
from django.db import DataError, IntegrityError, connection

from smtpgw import metrics

log = logging.getLogger(__name__)

_STOP = object()

# Errors about the values themselves: committing the same record again can never succeed.
REFUSED_VALUES = (
    DataError,
    IntegrityError,
    psycopg.DataError,
    psycopg.IntegrityError,
    UnicodeError,
    ValueError,
)


class RecordRefused(Exception):
    """The database refused this record for what it holds (its batch neighbours were stored)."""


def refused_values(error: BaseException) -> bool:
    """Whether ``error`` is about the values committed rather than the database's availability."""
    return isinstance(error, REFUSED_VALUES)


class GroupCommitter:
    def __init__(
        self,
        save_batch: Callable[[list], None],
        max_batch: int = 256,
        after_commit: Callable[[list], None] | None = None,
        refused: Callable[[BaseException], bool] = refused_values,
    ):
        self._save_batch = save_batch
        self._refused = refused
        self._after_commit = after_commit
        self._max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    async def commit(self, record) -> None:
        """Return once ``record`` is committed. Raises :class:`RecordRefused` when the database
        refuses the record itself, or the database's error when it could not be reached."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((record, loop, future))
        await future

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._commit_batch(batch)
            if stop:
                break
        connection.close()

    def _commit_batch(self, batch: list) -> None:
        records = [record for record, _, _ in batch]
        metrics.COMMIT_BATCH.observe(len(records))
        started = time.monotonic()
        try:
            self._save_batch(records)
            metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
            outcomes: list[BaseException | None] = [None] * len(records)
        except Exception as exc:
            log.error("group commit of %d submission(s) failed: %s", len(batch), exc)
            if not self._refused(exc):
                connection.close()  # reconnect next time: the database may have gone away
                outcomes = [exc] * len(records)
            elif len(records) == 1:
                outcomes = [_refusal(exc)]
            else:
                outcomes = self._commit_one_by_one(records)
        by_loop: dict = {}
        for (_, loop, future), outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, settled in by_loop.items():  # one wake-up of each event loop per batch
            loop.call_soon_threadsafe(_settle_all, settled)
        stored = [record for record, outcome in zip(records, outcomes, strict=True) if not outcome]
        if stored and self._after_commit is not None:
            try:
                self._after_commit(stored)
            except Exception:
                log.exception("after-commit hook failed")

    def _commit_one_by_one(self, records: list) -> list[BaseException | None]:
        """Commit each record in a transaction of its own; the outcome of each. Stops at the first
        error that is not about a record's values (the database went away): the records not
        tried yet fail with it, rather than each waiting for the database in turn."""
        outcomes: list[BaseException | None] = []
        for index, record in enumerate(records):
            try:
                self._save_batch([record])
            except Exception as exc:
                if not self._refused(exc):
                    log.error("commit of a single submission failed: %s", exc)
                    connection.close()
                    outcomes += [exc] * (len(records) - index)
                    break
                outcomes.append(_refusal(exc))
            else:
                outcomes.append(None)
        return outcomes


def _refusal(error: BaseException) -> RecordRefused:
    log.warning("the database refused a submission: %r", error)
    refusal = RecordRefused(str(error))
    refusal.__cause__ = error
    return refusal


def _settle_all(settled: list[tuple[asyncio.Future, BaseException | None]]) -> None:
    for future, error in settled:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class Dispatcher:
    """Collects items from any thread and hands them to ``publish`` in batches, from a thread of
    its own: at most every ``interval`` seconds, or as soon as ``max_items`` are waiting.

    The gateway queues processing this way, so the broker costs one publish per batch of
    accepted messages instead of one per commit, and never delays the next commit."""

    def __init__(
        self, publish: Callable[[list], None], interval: float = 0.05, max_items: int = 256
    ):
        self._publish = publish
        self._interval = max(interval, 0.001)  # zero or less would spin the thread
        self._max_items = max_items
        self._items: list = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dispatch", daemon=True)
        self._thread.start()

    def add(self, items: list) -> None:
        with self._wake:
            self._items.extend(items)
            if len(self._items) >= self._max_items:
                self._wake.notify()

    def close(self, timeout: float = 10.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._stopping and len(self._items) < self._max_items:
                    self._wake.wait(self._interval)
                items, self._items = self._items, []
                stopping = self._stopping
            for start in range(0, len(items), self._max_items):
                try:
                    self._publish(items[start : start + self._max_items])
                except Exception:
                    log.exception("dispatch of %d item(s) failed", len(items))
            if stopping:
                return
