"""The dashboard's numbers: counts per server, stream and window from a handful of grouped
queries, and what counts as a bounce."""

from datetime import timedelta

import pytest

from bounces.models import Bounce
from postmark_site.tests.test_dashboard import DUMP, make_bounce, make_message
from stats import outbound


@pytest.fixture(autouse=True)
def _fresh_dashboard_cache():
    """The dashboard caches finished days; every test starts without them."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_counts_per_window_and_stream(server, other_server):
    for ago in (timedelta(hours=2), timedelta(days=3), timedelta(days=20), timedelta(days=40)):
        make_message(server, ago=ago, delivered=True)
    make_message(server, "broadcast", ago=timedelta(hours=5))
    make_bounce(server, ago=timedelta(hours=3))
    make_bounce(server, "SMTPApiError", ago=timedelta(days=2), content=DUMP)
    make_bounce(server, "Transient", ago=timedelta(hours=1))
    make_message(other_server, ago=timedelta(hours=1))

    data = outbound.collect([server.pk])
    assert [s.server for s in data.servers] == [server]
    stats = data.servers[0]
    assert (stats.totals["24h"].sent, stats.totals["7d"].sent, stats.totals["30d"].sent) == (
        2,
        3,
        4,
    )
    assert stats.totals["24h"].delivered == 1 and stats.totals["30d"].delivered == 3
    assert stats.totals["24h"].bounced == 1  # Transient is not a bounce
    assert stats.totals["7d"].errors == 1 and stats.totals["24h"].errors == 0
    assert stats.totals["24h"].bounce_rate == 0.5
    streams = {s.stream_id: s for s in stats.streams}
    assert streams["broadcast"].totals["24h"].sent == 1
    assert streams["outbound"].totals["30d"].sent == 3
    assert sum(b.counts.sent for b in stats.series["24h"]) == 2
    assert len(stats.series["24h"]) == 24 and len(stats.series["30d"]) == 30
    assert [b.email for b in data.latest_errors] == ["gone@example.net"]
    assert outbound.collect(None).totals["24h"].sent == 3


@pytest.mark.django_db
def test_bounce_counts_by_type_excluded_from_rate():
    assert "SMTPApiError" in outbound.NOT_BOUNCES
    assert Bounce._meta.get_field("bounced_at").db_index or any(
        idx.fields == ["bounced_at"] for idx in Bounce._meta.indexes
    )
