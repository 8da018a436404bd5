"""The inbound tasks: ``inbound.post`` (one try of posting a message to its server's
InboundHookUrl), ``inbound.sweep`` (due retries and lost tasks) and ``inbound.retention``.
Routed to the "webhooks" queue (``CELERY_TASK_ROUTES``, "inbound.*"); the beat schedule runs the
sweep and the retention. ``InboundConfig`` imports this module so that every process has the
tasks registered."""

from celery import shared_task
from django.db import DatabaseError

from inbound import posting, services


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


@shared_task(name="inbound.retention")
def retention() -> int:
    """The beat's run of inbound retention (``services.enforce_retention``)."""
    return services.enforce_retention()
