"""Times as the admin writes them: one format, with the zone (``DATETIME_FORMAT`` of
``postmark_site/formats``), in the TIME_ZONE setting's zone."""

from datetime import datetime

from django.utils import formats, timezone


def admin_time(value: datetime | None, empty: str = "") -> str:
    """``2026-12-07 14:03:12 UTC`` for an aware datetime; ``empty`` for None."""
    if value is None:
        return empty
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return formats.date_format(value, "DATETIME_FORMAT")
