"""A server's bounce counts, as plain functions: how many bounces of each type it has and how many
addresses its bounces made inactive (``GET /deliverystats`` answers with them). Each is one query,
answered from an index: (server, type), and the partial index of inactive addresses."""

from django.db.models import Count
from django.db.models.functions import Lower

from bounces.models import Bounce


def bounce_counts_by_type(server) -> dict[str, int]:
    """Bounce type (e.g. "HardBounce") -> how many bounces of that type the server has."""
    rows = (
        Bounce.objects.filter(server=server)
        .order_by()
        .values("type")
        .annotate(count=Count("*"))  # COUNT(*): answered from the (server, type) index
    )
    return {row["type"]: row["count"] for row in rows}


def inactive_addresses(server) -> int:
    """How many distinct addresses (case-insensitively) the server's bounces made inactive."""
    return (
        Bounce.objects.filter(server=server, inactive=True)
        .order_by()
        .values(address=Lower("email"))
        .distinct()
        .count()
    )
