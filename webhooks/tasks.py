"""The webhook tasks: ``webhooks.post`` (one try of a delivery) and ``webhooks.sweep``.

Both are routed to the "webhooks" queue by ``CELERY_TASK_ROUTES`` ("webhooks.*"), and the beat
schedule runs ``webhooks.sweep``. Their names never change, so that a task queued before an
upgrade still finds its function afterwards. The code they run queues ``webhooks.post`` by name
(``webhooks.fanout.publish``); ``WebhooksConfig`` imports this module so that every process, not
only a worker, has the tasks registered.
"""

from celery import shared_task
from django.db import DatabaseError

from webhooks.deliveries import deliver, sweep


@shared_task(
    name="webhooks.post",
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=None,
)
def post(delivery_id: int, attempts: int | None = None) -> str:
    """One try of a webhook delivery (idempotent: see ``deliver``)."""
    return deliver(delivery_id, attempts)


@shared_task(name="webhooks.sweep")
def webhook_sweep() -> dict[str, int]:
    """Queue due retries whose task was lost and dispatch events whose dispatch was lost."""
    return sweep()
