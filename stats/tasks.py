"""The periodic recount of the recent days' roll-ups (``stats.rollup.refresh``), run by the beat
every ``STATS_REFRESH_SECONDS``."""

from celery import shared_task

from stats.rollup import refresh


@shared_task(name="stats.refresh")
def refresh_stats() -> int:
    return refresh()
