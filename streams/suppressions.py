"""Inactive recipients (suppressions), per stream."""

from django.db import IntegrityError, transaction

from .models import MessageStream, Suppression


def normalise(email: str) -> str:
    return email.strip().lower()


def inactive_among(stream: MessageStream, emails) -> set[str]:
    """The lower-cased addresses among ``emails`` that are inactive for ``stream``."""
    wanted = {normalise(e) for e in emails if e}
    if not wanted:
        return set()
    return set(
        Suppression.objects.filter(stream=stream, email__in=wanted).values_list("email", flat=True)
    )


def suppress(
    stream: MessageStream, email: str, reason: str, origin: str, bounce=None
) -> tuple[Suppression, bool]:
    """Mark an address inactive for a stream; returns (suppression, created). A spam complaint
    outranks an earlier reason, since it cannot be reactivated."""
    email = normalise(email)
    try:
        with transaction.atomic():
            return Suppression.objects.create(
                stream=stream, email=email, reason=reason, origin=origin, bounce=bounce
            ), True
    except IntegrityError:
        existing = Suppression.objects.get(stream=stream, email=email)
        if reason == Suppression.Reason.SPAM_COMPLAINT and existing.reason != reason:
            existing.reason, existing.origin, existing.bounce = reason, origin, bounce
            existing.save(update_fields=["reason", "origin", "bounce"])
        return existing, False


def reactivate(stream: MessageStream, email: str) -> bool:
    """Remove a suppression; returns whether there was one. Spam complaints stay (Postmark)."""
    deleted, _ = (
        Suppression.objects.filter(stream=stream, email=normalise(email))
        .exclude(reason=Suppression.Reason.SPAM_COMPLAINT)
        .delete()
    )
    return bool(deleted)
