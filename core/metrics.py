"""Prometheus metrics shared by every process: the exposition of a host's metrics files and the
Celery task counters.

Every process writes its counters and histograms to files in PROMETHEUS_MULTIPROC_DIR
(prometheus-client's multiprocess mode, set up by the settings), so several gateway processes,
gunicorn workers and Celery workers on one host are read through one port. Each endpoint shows the
metrics of its role, chosen by name prefix: the gateway's ``/metrics`` the ``postmark_smtp_``
family, the web app's the workers' families and the gauges read from the database at scrape time.
Names follow Prometheus' conventions: ``_total`` for counters, base units (``_seconds``,
``_bytes``).
"""

import time

from celery import signals
from django.conf import settings

# prometheus_client chooses multiprocess mode when it is first imported, from the environment
# variable the settings set: load them first.
MULTIPROC_DIR = settings.PROMETHEUS_MULTIPROC_DIR

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

SMTP_PREFIXES = ("postmark_smtp_",)
WORKER_PREFIXES = (
    "postmark_worker_",
    "postmark_processing_",
    "postmark_delivery_",
    "postmark_webhook_",
)

# Latency from the accept to a later step: seconds to days.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)

TASKS = Counter(
    "postmark_worker_tasks_total", "Celery tasks finished, by task name and result.",
    ["task", "result"],
)  # fmt: skip
TASK_SECONDS = Histogram(
    "postmark_worker_task_seconds", "Run time of Celery tasks, by task name.", ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)  # fmt: skip


class _Prefixed(Collector):
    """The metrics of this host's processes whose names start with one of ``prefixes``."""

    def __init__(self, directory: str, prefixes: tuple[str, ...]):
        self._all = MultiProcessCollector(None, directory)
        self._prefixes = prefixes

    def collect(self):
        for family in self._all.collect():
            if family.name.startswith(self._prefixes):
                yield family


def exposition(prefixes: tuple[str, ...], collectors=()) -> tuple[bytes, str]:
    """The text exposition of this host's metrics named with ``prefixes``, plus ``collectors``
    (read now, e.g. gauges from the database); returns (body, content type)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Prefixed(MULTIPROC_DIR, prefixes))
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


# --- Celery tasks, counted through the signals every worker sends ---------------------------------
_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id=None, **kwargs):
    _started[task_id] = time.monotonic()


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **kwargs):
    started = _started.pop(task_id, None)
    name = getattr(task, "name", "unknown")
    if started is not None:
        TASK_SECONDS.labels(name).observe(time.monotonic() - started)
    TASKS.labels(name, (state or "unknown").lower()).inc()
