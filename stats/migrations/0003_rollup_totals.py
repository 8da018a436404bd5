# The sums over every stream and tag (stats 0002 made room for them), apart from the schema
# change: on PostgreSQL a table cannot be altered in the transaction that filled it.

from django.db import migrations
from django.db.models import Q, Sum


def add_totals(apps, schema_editor):
    """The sums over every stream, every tag and both, from the rows kept so far (the raw rows
    of the older days may be gone): the stats API reads them from now on. A day at a time."""
    DailyCount = apps.get_model("stats", "DailyCount")
    exact = DailyCount.objects.filter(stream__isnull=False, tag__isnull=False)
    days = sorted(set(exact.values_list("day", flat=True).distinct()))
    for day in days:
        rows = []
        for by in (("stream",), ("tag",), ()):
            sums = (
                exact.filter(day=day)
                .values("server_id", *by, "metric", "key")
                .annotate(n=Sum("count"))
                .order_by()
            )
            rows += [
                DailyCount(day=day, count=row.pop("n"), **row) for row in list(sums)
            ]
        DailyCount.objects.bulk_create(rows, batch_size=2000)


def remove_totals(apps, schema_editor):
    DailyCount = apps.get_model("stats", "DailyCount")
    DailyCount.objects.filter(Q(stream__isnull=True) | Q(tag__isnull=True)).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('stats', '0002_rollup_scope'),
    ]

    operations = [
        migrations.RunPython(add_totals, remove_totals),
    ]
