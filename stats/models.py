from django.db import models

from servers.models import Server


class DailyCount(models.Model):
    """One figure of one US Eastern day, for one server, message stream and tag: how many
    messages were sent, bounced, opened, clicked… (``metric`` names it, ``stats.rollup`` lists
    them). The stats API sums these rows instead of counting messages and events; they are
    recounted from the raw rows for the most recent days (``stats.rollup.refresh``) and kept
    after the raw rows' retention has removed them."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="daily_counts")
    # Postmark's stream ID (e.g. "outbound"), as the API's ``messagestream`` names it.
    stream = models.CharField(max_length=100)
    tag = models.CharField(max_length=1000, blank=True)
    day = models.DateField()
    # What is counted ("sent", "bounce", "open_client", …) and, for a breakdown, of what
    # (the bounce type, the client's name, …; "" for a plain figure).
    metric = models.CharField(max_length=40)
    key = models.CharField(max_length=200, blank=True)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # Also the index of the API's questions about one stream.
            models.UniqueConstraint(
                fields=["server", "stream", "metric", "day", "key", "tag"], name="one_daily_count"
            )
        ]
        indexes = [
            # The API's questions about every stream: a server's metrics over a range of days
            # (a tag is then filtered on the few rows found).
            models.Index(fields=["server", "metric", "day"], name="daily_count_metric"),
            # The recount replaces whole days.
            models.Index(fields=["day"], name="daily_count_day"),
        ]

    def __str__(self):
        return f"{self.day} {self.metric}:{self.key}={self.count}"
