from django.apps import AppConfig


class StatsConfig(AppConfig):
    """The aggregation queries the admin and the stats API draw from, and the daily roll-ups
    (``DailyCount``) that serve the stats API."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "stats"
    verbose_name = "Statistics"
