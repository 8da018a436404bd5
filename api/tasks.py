"""The API's background task: ``api.bulk.send``, a POST /email/bulk request's items sent (routed
to the processing queue by ``CELERY_TASK_ROUTES``). Its name never changes, so that a task queued
before an upgrade still finds its function; a task sent again continues where the last one
stopped (``api.bulk``)."""

from celery import shared_task
from django.db import DatabaseError

from api.bulk import send_bulk


@shared_task(
    name="api.bulk.send",
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=None,
)
def send_bulk_request(bulk_id: str) -> str:
    return send_bulk(bulk_id)
