"""stats 0002 and 0003: the roll-ups kept before the sums over every stream and tag existed
gain those sums from the rows themselves (the raw rows of frozen days may be gone), so the stats
API reads the same figures after the upgrade; on SQLite and on PostgreSQL (where a table cannot
be altered in the transaction that filled it)."""

from datetime import date

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from stats.series import Filters, overview, series
from streams.services import create_server

BEFORE, AFTER = [("stats", "0001_initial")], [("stats", "0003_rollup_totals")]
DAY = date(2024, 3, 5)


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_kept_rows_gain_their_sums():
    server = create_server("Kept")
    old = migrate(BEFORE)
    try:
        DailyCount = old.get_model("stats", "DailyCount")
        kept = [
            ("outbound", "welcome", "sent", "", 3),
            ("outbound", "", "sent", "", 2),
            ("broadcast", "welcome", "sent", "", 5),
            ("outbound", "welcome", "bounce", "HardBounce", 1),
            ("broadcast", "", "open_client", "Gmail", 4),
        ]
        DailyCount.objects.bulk_create(
            DailyCount(server_id=server.pk, stream=stream, tag=tag, day=day, metric=metric,
                       key=key, count=n)
            for stream, tag, metric, key, n in kept
            for day in (DAY, date(2024, 3, 6))
        )  # fmt: skip
    finally:
        migrate(AFTER)
    every = Filters(server_id=server.pk)
    assert overview(every)["Sent"] == 20 and overview(every)["Bounced"] == 2
    assert series("sends", Filters(server_id=server.pk, tag="welcome", first=DAY, last=DAY)) == {
        "Days": [{"Date": "2024-03-05", "Sent": 8}],
        "Sent": 8,
    }
    assert overview(Filters(server_id=server.pk, stream="outbound", first=DAY))["Sent"] == 10
    clients = series("opens/emailclients", Filters(server_id=server.pk, last=DAY))
    assert clients == {"Days": [{"Date": "2024-03-05", "Gmail": 4}], "Gmail": 4}
    token = server.tokens.first().token
    body = Client(HTTP_X_POSTMARK_SERVER_TOKEN=token).get("/stats/outbound/sends").json()
    assert body["Sent"] == 20
