"""The broker's queues as the periodic sweeps see them: how many tasks wait in the queue a task
goes to, and so how much work a sweep may queue again.

A sweep queues again the rows whose lease ran out (``core.leases``): their task was lost (a broker
restart, a crashed publisher), or it still waits in a backlog older than the lease. Row by row the
two cannot be told apart, but the queue can be read: while the queue of that kind of work holds
``SWEEP_BUSY_QUEUE_LENGTH`` tasks or more the workers are behind, and what the sweep queued would
only wait behind the backlog, most of it a second copy of tasks already there. So a sweep queues
nothing for that kind of work then, and otherwise at most ``SWEEP_MAX_REQUEUE`` rows a run: a
backlog is never queued again whole by every sweep, and work whose task was lost is queued as
soon as the queue is short again. Reading a queue's length is a passive declare (RabbitMQ, Redis;
the embedded broker counts its files), once per sweep.
"""

import logging

from celery import current_app
from django.conf import settings
from kombu.exceptions import ChannelError

log = logging.getLogger(__name__)


def queue_of(task_name: str) -> str:
    """The broker queue ``task_name`` is routed to (``CELERY_TASK_ROUTES``)."""
    return current_app.amqp.router.route({}, task_name)["queue"].name


def waiting_tasks(task_name: str) -> int | None:
    """How many tasks wait in the queue of ``task_name`` (not those a worker holds); None when
    the broker cannot be read. With tasks run eagerly nothing ever waits."""
    app = current_app
    if app.conf.task_always_eager:
        return 0
    queue = queue_of(task_name)
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(
                max_retries=1, timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT
            )
            try:
                return connection.default_channel.queue_declare(queue, passive=True).message_count
            except ChannelError:
                return 0  # no such queue (RabbitMQ, Redis): nothing was ever left waiting in it
    except Exception as exc:
        log.warning("could not read the length of the broker queue %s: %s", queue, exc)
        return None


def requeue_budget(task_name: str) -> int:
    """How many rows a sweep may queue again now for the work of ``task_name``: none while its
    queue is busy, else ``SWEEP_MAX_REQUEUE`` (also when the broker cannot be read: queuing then
    fails as it would have, and the rows stay in the database)."""
    waiting = waiting_tasks(task_name)
    if waiting is not None and waiting >= settings.SWEEP_BUSY_QUEUE_LENGTH:
        log.info(
            "sweep: %d task(s) wait in the queue of %s: the workers are behind, nothing is "
            "queued again",
            waiting,
            task_name,
        )
        return 0
    return settings.SWEEP_MAX_REQUEUE
