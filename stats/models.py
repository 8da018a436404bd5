from django.db import models

from servers.models import Server


class DailyCount(models.Model):
    """One figure of one US Eastern day, for one server, message stream and tag: how many
    messages were sent, bounced, opened, clicked… (``metric`` names it, ``stats.rollup`` lists
    them). The stats API sums these rows instead of counting messages and events; they are
    recounted from the raw rows for the most recent days (``stats.rollup.refresh``) and kept
    after the raw rows' retention has removed them.

    Each figure is also kept summed over every stream (``stream`` NULL), every tag (``tag``
    NULL) and both: whatever a request filters on, it reads one row per day and figure, never a
    sum over every tag of a server."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="daily_counts")
    # Postmark's stream ID (e.g. "outbound"), as the API's ``messagestream`` names it; NULL:
    # the sum over every stream.
    stream = models.CharField(max_length=100, null=True, blank=True)
    # NULL: the sum over every tag ("" is the messages without a tag).
    tag = models.CharField(max_length=1000, null=True, blank=True)
    day = models.DateField()
    # What is counted ("sent", "bounce", "open_client", …) and, for a breakdown, of what
    # (the bounce type, the client's name, …; "" for a plain figure).
    metric = models.CharField(max_length=40)
    key = models.CharField(max_length=200, blank=True)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # Also the index of every API question: the server, stream and tag are each given
            # (NULL: all), then the figures and a range of days.
            models.UniqueConstraint(
                fields=["server", "stream", "tag", "metric", "day", "key"],
                name="one_daily_count_of_scope",
            )
        ]
        indexes = [
            # The recount replaces whole days.
            models.Index(fields=["day"], name="daily_count_day"),
        ]

    def __str__(self):
        return f"{self.day} {self.metric}:{self.key}={self.count}"
