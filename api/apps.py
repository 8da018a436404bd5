from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


def create_rate_limit_table(sender, using, **kwargs):
    """``migrate`` creates the table of the API's rate-limit counters when they are kept in the
    database (``settings.API_RATE_LIMIT_CACHE``, the default) and it is missing: wherever the
    service is installed or upgraded. With a Redis cache there is nothing to create. (Sent once
    per app with models; this app has none, and the command does nothing when the table
    exists.)"""
    call_command("createcachetable", database=using, verbosity=0)


class ApiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "api"
    verbose_name = "HTTP API"

    def ready(self):
        post_migrate.connect(create_rate_limit_table, dispatch_uid="api.create_rate_limit_table")
