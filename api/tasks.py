"""The API's background tasks: ``api.bulk.send``, a POST /email/bulk request's items sent (routed
to the processing queue by ``CELERY_TASK_ROUTES``), and ``api.bulk.sweep``, the beat's re-queue
of the bulk requests whose task was lost or stopped. Their names never change, so that a task
queued before an upgrade still finds its function; a task sent again continues where the last one
stopped (``api.bulk``)."""

import logging

from celery import shared_task
from django.db import DatabaseError

from api.bulk import requeue_stalled, send_bulk
from core import queues

log = logging.getLogger(__name__)


@shared_task(
    name="api.bulk.send",
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=None,
)
def send_bulk_request(bulk_id: str) -> str:
    return send_bulk(bulk_id)


def enqueue_bulk(bulk_id) -> bool:
    """Queue a bulk request's task. A broker that cannot take it loses nothing: the request is
    stored, and the sweep queues it again once its lease runs out."""
    try:
        send_bulk_request.apply_async((str(bulk_id),), retry=False)
    except Exception as exc:
        log.warning("could not queue bulk request %s: %s", bulk_id, exc)
        return False
    return True


@shared_task(name="api.bulk.sweep")
def sweep_bulk_requests() -> int:
    """Queue again the bulk requests not progressing for BULK_LEASE_SECONDS (none while the
    processing queue is busy: their tasks are most likely still in it); those out of tries end
    Failed. Returns how many were queued."""
    taken = requeue_stalled(queues.requeue_budget(send_bulk_request.name))
    return sum(enqueue_bulk(bulk_id) for bulk_id in taken)
