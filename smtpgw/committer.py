"""Group commit: one writer thread commits whatever submissions are waiting, together.

Sessions hand their submission to ``GroupCommitter.commit`` and await it; the writer thread takes
everything queued since its last commit and saves it in one database transaction, so durability
costs one fsync per batch rather than one per message, and the event loop never waits on the
database.
"""

import asyncio
import logging
import queue
import threading
from collections.abc import Callable

from django.db import connection

log = logging.getLogger(__name__)

_STOP = object()


class GroupCommitter:
    def __init__(
        self,
        save_batch: Callable[[list], None],
        max_batch: int = 256,
        after_commit: Callable[[list], None] | None = None,
    ):
        self._save_batch = save_batch
        self._after_commit = after_commit
        self._max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    async def commit(self, record) -> None:
        """Return once ``record`` is committed; raise if the batch could not be committed."""
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
        error: BaseException | None = None
        try:
            self._save_batch([record for record, _, _ in batch])
        except Exception as exc:
            log.error("group commit of %d submission(s) failed: %s", len(batch), exc)
            error = exc
            connection.close()  # reconnect next time: the database may have gone away
        by_loop: dict = {}
        for _, loop, future in batch:
            by_loop.setdefault(loop, []).append(future)
        for loop, futures in by_loop.items():  # one wake-up of each event loop per batch
            loop.call_soon_threadsafe(_settle_all, futures, error)
        if error is None and self._after_commit is not None:
            try:
                self._after_commit([record for record, _, _ in batch])
            except Exception:
                log.exception("after-commit hook failed")


def _settle_all(futures: list[asyncio.Future], error: BaseException | None) -> None:
    for future in futures:
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
        self._interval = interval
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
