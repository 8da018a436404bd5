"""The periodic clean-up task: archived streams are purged after STREAM_PURGE_DAYS."""

import time

import pytest
from django.utils import timezone

from conftest import RABBITMQ_URL, subprocess_env
from streams.models import MessageStream
from streams.services import create_stream
from streams.tasks import purge_archived_streams, purge_archived_streams_now


def _archive(stream, days_ago):
    stream.archived_at = timezone.now() - timezone.timedelta(days=days_ago)
    stream.save(update_fields=["archived_at"])


@pytest.mark.django_db
def test_purge_deletes_only_streams_archived_long_enough(server, settings):
    settings.STREAM_PURGE_DAYS = 45
    old = create_stream(server, "old")
    recent = create_stream(server, "recent")
    _archive(old, 46)
    _archive(recent, 44)
    assert purge_archived_streams_now() == 1
    assert set(server.streams.values_list("stream_id", flat=True)) == {
        "outbound",
        "inbound",
        "broadcast",
        "recent",
    }
    assert recent.expected_purge_date > timezone.now()


def _wait_until_purged(stream_pk, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not MessageStream.objects.filter(pk=stream_pk).exists():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_on_rabbitmq_runs_the_task(server, rabbitmq_url, start_process):
    from postmark_site.celery import app

    old = create_stream(server, "old")
    _archive(old, 100)
    queue = f"test-{time.monotonic_ns()}"
    worker = start_process(
        [
            "-m",
            "celery",
            "-A",
            "postmark_site",
            "worker",
            "-l",
            "info",
            "--pool",
            "solo",
            "-Q",
            queue,
        ],
        env=subprocess_env(CELERY_BROKER_URL=rabbitmq_url),
        name="worker",
    )
    worker.wait_for("ready", timeout=60)
    with app.connection_for_write(RABBITMQ_URL) as conn:
        purge_archived_streams.apply_async(connection=conn, queue=queue)
    assert _wait_until_purged(old.pk), worker.output()
    assert "succeeded" in worker.output()


@pytest.mark.django_db(transaction=True)
def test_the_embedded_default_runs_the_task_in_a_real_worker(server, start_process, settings):
    """No broker configured: the filesystem queue under DATA_DIR carries the task."""
    from postmark_site.celery import app

    old = create_stream(server, "old")
    _archive(old, 100)
    worker = start_process(
        ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "--pool", "solo"],
        env=subprocess_env(CELERY_BROKER_URL=""),
        name="worker",
    )
    worker.wait_for("ready", timeout=60)
    assert app.conf.broker_url.startswith("fsqueue://")
    purge_archived_streams.delay()
    assert _wait_until_purged(old.pk), worker.output()
