"""The inbound tasks: ``inbound.post`` (one try of posting a message to its server's
InboundHookUrl) and ``inbound.sweep`` (due retries and lost tasks). Routed to the "webhooks"
queue (``CELERY_TASK_ROUTES``, "inbound.*"); the beat schedule runs the sweep. ``InboundConfig``
imports this module so that every process has the tasks registered."""

from celery import shared_task
from django.db import DatabaseError

from inbound import posting


@shared_task(
    name="inbound.post",
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=None,
)
def post(message_pk: int, attempts: int | None = None) -> str:
    """One try of posting an inbound message (idempotent: see ``posting.post``)."""
    return posting.post(message_pk, attempts)


@shared_task(name="inbound.sweep")
def sweep() -> int:
    """Queue the inbound messages whose retry is due or whose task was lost."""
    return posting.sweep()
