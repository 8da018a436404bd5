"""Work taken with a lease: the one way a worker or the sweep takes a row of work.

Submissions waiting to be processed, messages waiting to be delivered and webhook deliveries waiting
to be posted are rows in the database (the source of truth); a task carries only an id. A row is
*free* when its lease is empty or has run out. Taking rows is one conditional UPDATE of the free
ones, so of two workers (or a worker and the sweep) racing for a row exactly one wins; a holder
that dies simply lets its lease run out, and the sweep takes the row again. The same lease says
"queued, due by then": the sweep leaves a row alone while a task for it should still be on its way,
so a backlog merely waiting in the broker is not queued again by every sweep.

``attempts`` counts the tries that started work on a row, for retry schedules and for giving up.
"""

from datetime import timedelta

from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class Leased(models.Model):
    """The lease fields of a work row."""

    attempts = models.PositiveIntegerField(default=0, db_default=0)
    leased_until = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Taken by a worker or queued until then."
    )

    class Meta:
        abstract = True


def free(queryset, now=None):
    """The rows of ``queryset`` that nobody holds."""
    now = now or timezone.now()
    return queryset.filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))


def take(queryset, seconds: float, now=None, *, count_attempt: bool = False, **fields) -> int:
    """Lease the free rows of ``queryset`` for ``seconds``, setting ``fields`` in the same
    UPDATE; returns how many were taken. With ``count_attempt`` each taken row's ``attempts``
    goes up by one."""
    now = now or timezone.now()
    fields["leased_until"] = now + timedelta(seconds=seconds)
    if count_attempt:
        fields["attempts"] = F("attempts") + 1
    return free(queryset, now).update(**fields)


def take_ids(queryset, seconds: float, now=None, limit: int = 10_000, order=("pk",)) -> list:
    """Lease up to ``limit`` free rows of ``queryset``, first in ``order``; returns the ids this
    call took, in that order (a row taken meanwhile by someone else is left out)."""
    now = now or timezone.now()
    candidates = list(free(queryset, now).order_by(*order).values_list("pk", flat=True)[:limit])
    if not candidates:
        return []
    until = now + timedelta(seconds=seconds)
    model = queryset.model
    free(model.objects.filter(pk__in=candidates), now).update(leased_until=until)
    taken = set(
        model.objects.filter(pk__in=candidates, leased_until=until).values_list("pk", flat=True)
    )
    return [pk for pk in candidates if pk in taken]


def lease(queryset, seconds: float, now=None) -> int:
    """Set the lease of ``queryset``'s rows to ``seconds`` from now, whoever held them: a task
    queued by the row's own holder (a retry, a delivery due later)."""
    now = now or timezone.now()
    return queryset.update(leased_until=now + timedelta(seconds=seconds))


def release(queryset, **fields) -> int:
    """End the lease of ``queryset``'s rows, setting ``fields`` in the same UPDATE."""
    return queryset.update(leased_until=None, **fields)
