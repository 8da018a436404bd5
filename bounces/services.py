"""Recording bounces: the one place every kind of bounce is created."""

from django.utils import timezone

from streams.models import MessageStream

from .models import Bounce
from .types import BOUNCE_TYPES


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
    inactive: bool = False,
    can_activate: bool = False,
    bounced_at=None,
) -> Bounce:
    if type not in BOUNCE_TYPES:
        raise ValueError(f"unknown bounce type {type!r}")
    return Bounce.objects.create(
        server=server,
        stream=stream,
        message_stream=message_stream,
        type=type,
        email=email,
        message_id=message_id,
        from_address=from_address[:320],
        subject=subject,
        tag=tag[:1000],
        metadata=metadata or {},
        details=details,
        content=content,
        inactive=inactive,
        can_activate=can_activate,
        bounced_at=bounced_at or timezone.now(),
    )
