"""Finding bounces the way a user asks: by MessageID, recipient, sender, subject, tag, type,
state and date. The bounce API (``GET /bounces``) and the admin's bounce list both filter through
these functions, so they always agree."""

import uuid
from datetime import datetime

from django.db.models import Q, QuerySet


def as_message_id(value: str) -> uuid.UUID | None:
    """``value`` as a MessageID (any UUID spelling, ``<…>`` brackets allowed), or None."""
    text = (value or "").strip().strip("<>").strip()
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def filter_bounces(
    queryset: QuerySet,
    *,
    message_stream: str | None = None,
    message_id: uuid.UUID | None = None,
    type: str | None = None,
    inactive: bool | None = None,
    email: str | None = None,
    tag: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet:
    """``queryset`` narrowed by every filter given (None: no filter). ``email`` matches a part of
    the recipient, in any letter case (Postmark's emailFilter); ``since`` is inclusive, ``until``
    exclusive."""
    if message_stream is not None:
        queryset = queryset.filter(message_stream=message_stream)
    if message_id is not None:
        queryset = queryset.filter(message_id=message_id)
    if type:
        queryset = queryset.filter(type=type)
    if inactive is not None:
        queryset = queryset.filter(inactive=inactive)
    if email:
        queryset = queryset.filter(email__icontains=email)
    if tag:
        queryset = queryset.filter(tag=tag)
    if since is not None:
        queryset = queryset.filter(bounced_at__gte=since)
    if until is not None:
        queryset = queryset.filter(bounced_at__lt=until)
    return queryset


def search_bounces(queryset: QuerySet, term: str) -> QuerySet:
    """The admin's search box: a MessageID finds that message's bounces; an address finds the
    bounces of that recipient or from that sender; any other text finds bounces whose subject or
    recipient holds it, or whose tag it is."""
    term = (term or "").strip()
    if not term:
        return queryset
    message_id = as_message_id(term)
    if message_id is not None:
        return filter_bounces(queryset, message_id=message_id)
    if "@" in term and " " not in term:
        return queryset.filter(Q(email__icontains=term) | Q(from_address__icontains=term))
    return queryset.filter(Q(subject__icontains=term) | Q(tag=term) | Q(email__icontains=term))
