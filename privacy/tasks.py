"""The data removal tasks: ``privacy.remove_data`` (one removal, on the default queue) and
``privacy.resume_removals`` (the beat's: removals whose task was lost are queued again). Their
names never change, so that a task queued before an upgrade still finds its function."""

from celery import shared_task
from django.db import DatabaseError

from privacy.removal import run_removal, stale_removals


@shared_task(
    name="privacy.remove_data",
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=None,
)
def remove_data(removal_id: int) -> str:
    return run_removal(removal_id)


@shared_task(name="privacy.resume_removals")
def resume_removals() -> int:
    stale = stale_removals()
    for removal_id in stale:
        remove_data.delay(removal_id)
    return len(stale)
