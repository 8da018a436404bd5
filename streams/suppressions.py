"""Inactive recipients (suppressions), per stream."""

from django.db import IntegrityError, transaction

from core.addresses import address_key
from streams.models import MessageStream, Suppression
from streams.signals import subscription_changed


def normalise(email: str) -> str:
    """The address as suppressions store and compare it: letter case ignored in the local part
    too, the domain as ``core.addresses.ascii_domain`` writes it (``X@Bücher.example`` →
    ``x@xn--bcher-kva.example``); an address without a valid domain only lower-cased."""
    return address_key(email)


def inactive_among(stream: MessageStream, emails) -> set[str]:
    """The addresses among ``emails`` that are inactive for ``stream``, as ``normalise``
    writes them."""
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
            suppression = Suppression.objects.create(
                stream=stream, email=email, reason=reason, origin=origin, bounce=bounce
            )
            _subscription_change(stream, email, suppress_sending=True, reason=reason, origin=origin)
            return suppression, True
    except IntegrityError:
        existing = Suppression.objects.get(stream=stream, email=email)
        if reason == Suppression.Reason.SPAM_COMPLAINT and existing.reason != reason:
            existing.reason, existing.origin, existing.bounce = reason, origin, bounce
            existing.save(update_fields=["reason", "origin", "bounce"])
        return existing, False


def reactivate(
    stream: MessageStream, email: str, origin: str = Suppression.Origin.CUSTOMER
) -> bool:
    """Remove a suppression; returns whether there was one. Spam complaints stay (Postmark)."""
    with transaction.atomic():
        found = (
            Suppression.objects.filter(stream=stream, email=normalise(email))
            .exclude(reason=Suppression.Reason.SPAM_COMPLAINT)
            .first()
        )
        if found is None:
            return False
        found.delete()
        _subscription_change(stream, found.email, suppress_sending=False, reason=found.reason,
                             origin=origin)  # fmt: skip
        return True


def _subscription_change(stream, email, *, suppress_sending, reason, origin) -> None:
    subscription_changed.send(
        sender=Suppression,
        stream=stream,
        email=email,
        suppress_sending=suppress_sending,
        reason=reason,
        origin=origin,
    )


def is_spam_complaint(stream: MessageStream, email: str) -> bool:
    """Whether the address is suppressed on the stream because of a spam complaint (permanent)."""
    return Suppression.objects.filter(
        stream=stream, email=normalise(email), reason=Suppression.Reason.SPAM_COMPLAINT
    ).exists()


def search(
    stream: MessageStream,
    *,
    reason: str | None = None,
    origin: str | None = None,
    email: str | None = None,
    since=None,
    before=None,
):
    """The stream's suppressions, newest first, optionally filtered: ``since`` is inclusive,
    ``before`` exclusive (datetimes)."""
    found = Suppression.objects.filter(stream=stream)
    if reason:
        found = found.filter(reason=reason)
    if origin:
        found = found.filter(origin=origin)
    if email:
        found = found.filter(email=normalise(email))
    if since is not None:
        found = found.filter(created_at__gte=since)
    if before is not None:
        found = found.filter(created_at__lt=before)
    return found.order_by("-created_at", "-id")
