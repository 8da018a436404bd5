"""The admin's System page, apart from its queries (``stats.system``): where mail waits now and
how that changed, across every server, with the broker's queues read here (through the Celery app,
which only this top app may import) and the gauges' sparklines drawn (``postmark_site.charts``).
"""

from django.conf import settings
from django.utils import timezone

from core.hostnames import local_name_warnings
from postmark_site.charts import sparkline_svg
from stats import system


def drawn(gauges: list[system.Gauge]) -> list[system.Gauge]:
    """The gauges, each with its sparkline of the last day (``gauge.sparkline``)."""
    for gauge in gauges:
        gauge.sparkline = sparkline_svg(
            [count for _, count in gauge.points] + [gauge.count], gauge.label
        )
    return gauges


def broker_queues() -> list[dict]:
    """Messages waiting in each Celery queue of the broker (None when it cannot be read)."""
    from postmark_site.celery import app

    names = list(settings.CELERY_TASK_QUEUES)
    try:
        with app.connection_for_read(settings.CELERY_BROKER_URL) as connection:
            connection.ensure_connection(max_retries=1, timeout=settings.HEALTH_CHECK_TIMEOUT)
            channel = connection.default_channel
            found = []
            for name in names:
                try:
                    found.append({"name": name, "messages": channel.queue_declare(
                        name, passive=True).message_count, "error": ""})  # fmt: skip
                except Exception as exc:
                    channel = connection.channel()  # a failed passive declare closes the channel
                    found.append({"name": name, "messages": None, "error": _short(exc)})
            return found
    except Exception as exc:
        return [{"name": name, "messages": None, "error": _short(exc)} for name in names]


def _short(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {' '.join(str(exc).split())}"[:200]


def context(now=None) -> dict:
    now = now or timezone.now()
    return {
        "gauges": drawn(system.gauges(now)),
        "recipients_by_status": system.recipients_by_status(),
        "broker_queues": broker_queues(),
        "embedded_broker": settings.EMBEDDED_BROKER,
        "destinations": system.deferred_by_destination(),
        "webhook_backlog": system.webhook_backlog_by_url(),
        "broken_domains": system.broken_domains(),
        "local_names": local_name_warnings(),
        "sample_interval": system.duration(settings.SYSTEM_SAMPLE_INTERVAL_SECONDS),
        "samples": system.samples_taken(now),
        "now": now,
    }
