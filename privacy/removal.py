"""Erasing an address: every stored trace of it, in every server, deleted in batches.

What goes, for an address (any letter case):
- every outbound message it was sent to (an envelope recipient, or in To/Cc/Bcc) or from, or
  whose Subject or Metadata names it, with
  its recipients' delivery rows, its submission (the raw message and envelope), its events and
  bounces; a message is deleted whole, other recipients' record of it too (its raw source names
  the address, and cannot be edited reliably: encoded words, quoted-printable, base64);
- submissions not (yet) processed into a message whose envelope names it;
- events about it (deliveries, bounces, spam complaints, opens and clicks, subscription changes),
  with their webhook deliveries and attempts (their bodies name it);
- bounces of it or from it, with their dumps (a shared dump too);
- suppressions of it in every stream;
- webhook deliveries and attempts whose kept body or answer names it;
- inbound messages from it or to it (envelope or headers), or whose subject or parsed JSON names
  it, with their raw source;
- the records of confirmation messages sent to it.

Not touched: sender signatures and domains (the account's own configuration, removed through
their APIs), and what never was a row of this database (logs, the broker's queue files hold
MessageIDs only). Rows are deleted, not overwritten: on PostgreSQL the space (and the old row
versions) go at the next VACUUM, on SQLite when pages are reused or at VACUUM.
"""

import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from bounces.models import Bounce, Dump
from domains.models import ConfirmationSent
from inbound.models import InboundMessage
from messages.models import MessageEvent, OutboundMessage, Recipient, Submission
from messages.retention import delete_in_batches
from privacy.models import DataRemoval
from privacy.notify import notify
from streams.models import Suppression
from webhooks.models import WebhookAttempt, WebhookDelivery

BATCH = 500
# What may stand next to an address inside it: a match must not be part of a longer address.
_ADDRESS_CHARS = r"A-Za-z0-9._%+'=-"


def address_pattern(address: str) -> str:
    """A regular expression (Python's and PostgreSQL's) for ``address`` as a whole address."""
    escaped = "".join(c if c.isalnum() or c == "@" else "\\" + c for c in address)
    return f"(^|[^{_ADDRESS_CHARS}]){escaped}($|[^{_ADDRESS_CHARS}])"


def _mentions(field: str, pattern: str, cast: bool = False) -> tuple[dict, Q]:
    """(annotations, condition) for "``field`` names the address" (case-insensitively)."""
    if not cast:
        return {}, Q(**{f"{field}__iregex": pattern})
    alias = f"_{field}_text"
    return {alias: Cast(field, TextField())}, Q(**{f"{alias}__iregex": pattern})


def _matching(queryset, pattern: str, indexed: Q, text=(), json=()):
    """``queryset``'s rows matching ``indexed`` or naming the address in a ``text`` or ``json``
    column."""
    annotations, condition = {}, indexed
    for field, cast in [(f, False) for f in text] + [(f, True) for f in json]:
        extra, mentions = _mentions(field, pattern, cast)
        annotations.update(extra)
        condition |= mentions
    return (
        queryset.annotate(**annotations).filter(condition)
        if annotations
        else queryset.filter(condition)
    )


def _ids(queryset) -> list:
    return list(queryset.order_by().values_list("pk", flat=True).distinct())


def erase_address(address: str, batch: int = BATCH) -> dict[str, int]:
    """Delete every stored trace of ``address`` (see the module's docstring); returns the rows
    deleted by kind. Safe to run again: a second run finds nothing."""
    address = address.strip()
    pattern = address_pattern(address)
    counts: dict[str, int] = {}

    recipient_of = set(
        Recipient.objects.filter(email__iexact=address).values_list("message_id", flat=True)
    )
    message_pks = set(
        _ids(
            _matching(
                OutboundMessage.objects.all(),
                pattern,
                Q(pk__in=recipient_of) | Q(from_email=address.lower()),
                text=("from_address", "subject"),
                json=("to", "cc", "bcc", "recipients", "metadata"),
            )
        )
    )
    message_rows = OutboundMessage.objects.filter(pk__in=message_pks)
    message_ids = set(message_rows.values_list("message_id", flat=True))
    submission_pks = set(
        message_rows.exclude(submission=None).values_list("submission_id", flat=True)
    )
    submission_pks |= set(
        _ids(
            _matching(
                Submission.objects.all(),
                pattern,
                Q(mail_from__iexact=address),
                json=("rcpt_to",),
            )
        )
    )
    message_ids |= set(
        Submission.objects.filter(pk__in=submission_pks).values_list("message_id", flat=True)
    )

    # Webhook bodies and answers first (their events may stay, e.g. another recipient's).
    counts["webhook_attempts"] = delete_in_batches(
        _matching(
            WebhookAttempt.objects.all(), pattern, Q(pk__in=[]), text=("response_excerpt", "error")
        ),
        batch,
    )
    counts["webhook_deliveries"] = delete_in_batches(
        _matching(
            WebhookDelivery.objects.all(), pattern, Q(pk__in=[]), text=("payload", "last_error")
        ),
        batch,
    )
    counts["events"] = delete_in_batches(
        _matching(
            MessageEvent.objects.all(),
            pattern,
            Q(recipient__iexact=address)
            | Q(outbound_id__in=message_pks)
            | Q(message_id__in=message_ids),
            text=("details",),
            json=("data",),
        ),
        batch,
    )
    bounces = _matching(
        Bounce.objects.all(),
        pattern,
        Q(email__iexact=address) | Q(message_id__in=message_ids),
        text=("from_address", "subject", "content", "details"),
        json=("metadata",),
    )
    dump_pks = set(bounces.exclude(source=None).values_list("source_id", flat=True))
    counts["bounces"] = delete_in_batches(bounces, batch)
    counts["dumps"] = delete_in_batches(
        _matching(Dump.objects.all(), pattern, Q(pk__in=dump_pks), text=("text",)), batch
    )
    counts["suppressions"] = delete_in_batches(
        Suppression.objects.filter(email__iexact=address), batch
    )
    counts["messages"] = delete_in_batches(
        OutboundMessage.objects.filter(pk__in=message_pks), batch
    )
    counts["submissions"] = delete_in_batches(
        Submission.objects.filter(pk__in=submission_pks), batch
    )
    counts["inbound_messages"] = delete_in_batches(
        _matching(
            InboundMessage.objects.all(),
            pattern,
            Q(from_email__iexact=address) | Q(original_recipient__iexact=address),
            text=("to", "cc", "subject"),
            json=("payload",),
        ),
        batch,
    )
    counts["confirmations"] = delete_in_batches(
        ConfirmationSent.objects.filter(email__iexact=address), batch
    )
    return counts


def names_address(text: str, address: str) -> bool:
    """Whether ``text`` names ``address`` as a whole address (any letter case)."""
    return re.search(address_pattern(address), text, re.IGNORECASE) is not None


def run_removal(removal_id: int) -> str:
    """Carry out a removal (once: a Done one is left alone), record what went, forget the
    address, and tell the requester when asked to."""
    removal = DataRemoval.objects.filter(pk=removal_id).first()
    if removal is None or removal.status == DataRemoval.Status.DONE:
        return "gone" if removal is None else "done already"
    counts = erase_address(removal.requested_for) if removal.requested_for else {}
    with transaction.atomic():
        removal.status = DataRemoval.Status.DONE
        removal.completed_at = timezone.now()
        removal.removed = counts
        if removal.requested_by.lower() == removal.requested_for.lower():
            removal.requested_by = ""
        removal.requested_for = ""
        removal.save()
        if removal.notify_when_completed and removal.requested_by:
            notify(removal)
    return "done"


def stale_removals(now=None) -> list[int]:
    """The removals still Pending DATA_REMOVAL_RETRY_AFTER seconds after they were asked for."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.DATA_REMOVAL_RETRY_AFTER)
    return list(
        DataRemoval.objects.filter(
            status=DataRemoval.Status.PENDING, created_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
