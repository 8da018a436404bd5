"""Recording bounces: the one place every kind of bounce is created."""

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from bounces.models import Bounce, Dump
from bounces.types import SPAM_COMPLAINT, bounce_type
from streams.models import MessageStream, Suppression
from streams.suppressions import normalise, reactivate


def storable(text: str, limit: int | None = None) -> str:
    """``text`` as a column can hold it: no NUL (PostgreSQL refuses it), at most ``limit``
    characters. For values that describe a failure; input that is stored as data is refused
    before it gets here."""
    text = str(text or "").replace("\x00", "\ufffd")
    return text[:limit] if limit else text


def record_bounce(
    *,
    server,
    message_stream: str,
    type: str,
    email: str,
    stream: MessageStream | None = None,
    message_id=None,
    from_address: str = "",
    subject: str = "",
    tag: str = "",
    metadata: dict | None = None,
    details: str = "",
    content: str = "",
    source: Dump | None = None,
    inactive: bool = False,
    can_activate: bool = False,
    bounced_at=None,
) -> Bounce:
    bounce_type(type)  # ValueError for a name that is not a bounce type
    return Bounce.objects.create(
        server=server,
        stream=stream,
        message_stream=storable(message_stream, 100),
        type=type,
        email=storable(email, 320),
        message_id=message_id,
        from_address=storable(from_address, 320),
        subject=storable(subject),
        tag=storable(tag, 1000),
        metadata=metadata or {},
        details=details,
        content=content,
        source=source,
        inactive=inactive,
        can_activate=can_activate,
        bounced_at=bounced_at or timezone.now(),
    )


class CannotActivate(ValueError):
    """The bounce's address cannot be reactivated (Postmark ErrorCode 1003)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def bounce_stream(bounce: Bounce) -> MessageStream | None:
    """The stream a bounce belongs to: its foreign key, else its reported stream ID."""
    if bounce.stream_id is not None:
        return bounce.stream
    return MessageStream.objects.filter(
        server_id=bounce.server_id, stream_id=bounce.message_stream
    ).first()


def reactivate_address(server, stream_id: str, email: str) -> None:
    """The address is active again on the stream: its suppression (unless a spam complaint) goes,
    and the server's inactive bounces for it on that stream that can be activated turn active."""
    stream = MessageStream.objects.filter(server=server, stream_id=stream_id).first()
    if stream is not None:
        reactivate(stream, email)
    Bounce.objects.filter(
        Q(email__iexact=email.strip()) | Q(email__iexact=normalise(email)),  # stored as written
        server=server,
        message_stream=stream_id,
        inactive=True,
        can_activate=True,
    ).update(inactive=False)


@transaction.atomic
def activate_bounce(bounce: Bounce) -> Bounce:
    """Reactivate the address of a bounce (``PUT /bounces/{id}/activate`` and the admin action).

    Raises ``CannotActivate`` for bounces that cannot be activated — spam complaints above all —
    and when the address is suppressed on the stream because of a spam complaint."""
    if bounce.type == SPAM_COMPLAINT:
        raise CannotActivate(
            "This bounce cannot be activated: it is a spam complaint, and addresses that "
            "complained about spam stay inactive."
        )
    if not bounce.can_activate:
        raise CannotActivate(
            f"This bounce cannot be activated: bounces of type {bounce.type} cannot be "
            "reactivated (CanActivate is false)."
        )
    stream = bounce_stream(bounce)
    if (
        stream is not None
        and Suppression.objects.filter(
            stream=stream, email=normalise(bounce.email), reason=Suppression.Reason.SPAM_COMPLAINT
        ).exists()
    ):
        raise CannotActivate(
            f"This bounce cannot be activated: {normalise(bounce.email)} marked a message on the "
            f"stream '{stream.stream_id}' as spam, and spam complaints cannot be reactivated."
        )
    reactivate_address(bounce.server, bounce.message_stream, bounce.email)
    if bounce.inactive:
        bounce.inactive = False
        bounce.save(update_fields=["inactive"])
    return bounce
