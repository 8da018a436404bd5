"""Per-server sending limits (abuse control; off unless set on the server).

A server may send at most ``smtp_messages_per_minute`` messages in any minute and
``smtp_messages_per_day`` in any 24 hours (empty or 0 = no limit), through the SMTP gateway and
the HTTP send API together: over SMTP, MAIL gets ``451 4.7.1``; over HTTP, the message gets
ErrorCode 429 (each item of a batch on its own). Reports that arrive at the bounce MX are not
sending and never count. The rule counts the server's Submissions through the (server,
received_at) index, so it holds across processes. Each process reuses the figures for
``SMTP_SENDING_LIMIT_CACHE_SECONDS`` and adds the messages it lets through meanwhile, so a busy
server costs one COUNT per interval, not one per message; several processes together may
overshoot by what the others accept within it.

These are plain blocking functions: the gateway calls them in its thread pool.
"""

import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from messages.models import Submission
from servers.models import Server
from streams.models import Endpoint

# Where a server's own messages come in; the bounce MX takes reports about them.
SENDING_ENDPOINTS = (Endpoint.TRANSACTIONAL, Endpoint.BROADCAST, Endpoint.API)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
CACHE_ENTRIES = 10_000


@dataclass
class SendingUse:
    """A server's limits (0 = none) and the messages it sent in the last minute and day."""

    per_minute: int = 0
    per_day: int = 0
    last_minute: int = 0
    last_day: int = 0

    @property
    def limited(self) -> bool:
        return bool(self.per_minute or self.per_day)

    def reached(self) -> str:
        """The limit one more message would pass ("at most 3 message(s) per minute"), or ''."""
        if self.per_minute and self.last_minute >= self.per_minute:
            return f"at most {self.per_minute} message(s) per minute"
        if self.per_day and self.last_day >= self.per_day:
            return f"at most {self.per_day} message(s) per day"
        return ""

    def refusal(self) -> str:
        """The 451 reply when one of the limits is reached, else ''."""
        return smtp_refusal(self.reached())


def smtp_refusal(reached: str) -> str:
    if not reached:
        return ""
    return f"451 4.7.1 Sending limit of this server reached ({reached}): try again later"


def api_refusal(reached: str) -> str:
    if not reached:
        return ""
    return f"Sending limit of this server reached ({reached}): try again later."


def is_limited(server: Server) -> bool:
    """Whether a server (as just read) has a sending limit at all."""
    return bool(server.smtp_messages_per_minute or server.smtp_messages_per_day)


def sending_use(server_id: int, now=None, whole_day: bool = False) -> SendingUse:
    """The server's limits and current use, read from the database (no cache). The last day is
    counted only when it has a daily limit, or when ``whole_day`` asks for it (admin page)."""
    row = (
        Server.objects.filter(pk=server_id)
        .values_list("smtp_messages_per_minute", "smtp_messages_per_day")
        .first()
    )
    use = SendingUse(*(value or 0 for value in (row or (0, 0))))
    if not use.limited:
        return use
    now = now or timezone.now()
    count_day = bool(use.per_day or whole_day)
    since = now - (DAY if count_day else MINUTE)
    sent = Submission.objects.filter(
        server_id=server_id, received_at__gt=since, endpoint__in=SENDING_ENDPOINTS
    )
    counts = sent.aggregate(
        day=Count("pk"), minute=Count("pk", filter=Q(received_at__gt=now - MINUTE))
    )
    use.last_minute = counts["minute"]
    use.last_day = counts["day"] if count_day else 0
    return use


_lock = threading.Lock()
_cache: dict[int, tuple[float, SendingUse]] = {}


def sending_limit_reached(server_id: int) -> str:
    """Before one more message: the limit it would pass ("at most 3 message(s) per minute"),
    else '' (and the message is counted in this process's figures until they are next read)."""
    reached = _cached(server_id)
    if reached is not None:
        return reached
    use = sending_use(server_id)
    with _lock:
        if len(_cache) >= CACHE_ENTRIES:
            _cache.clear()
        _cache[server_id] = (time.monotonic() + settings.SMTP_SENDING_LIMIT_CACHE_SECONDS, use)
        return _count(use)


def sending_limit_refusal(server_id: int) -> str:
    """At MAIL: the 451 4.7.1 reply when the server is over one of its limits, else ''."""
    return smtp_refusal(sending_limit_reached(server_id))


def cached_refusal(server_id: int) -> str | None:
    """:func:`sending_limit_refusal` from this process's figures, or None when they must be read
    from the database first. Cheap enough for the gateway's event loop."""
    reached = _cached(server_id)
    return None if reached is None else smtp_refusal(reached)


def _cached(server_id: int) -> str | None:
    with _lock:
        hit = _cache.get(server_id)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return _count(hit[1])


def _count(use: SendingUse) -> str:
    reached = use.reached()
    if not reached and use.limited:
        use.last_minute += 1
        use.last_day += 1
    return reached


def clear_cache() -> None:
    with _lock:
        _cache.clear()
