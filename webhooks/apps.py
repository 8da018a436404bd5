from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from outbound.events import event_committed

        from .dispatch import on_event_committed

        event_committed.connect(on_event_committed, dispatch_uid="webhooks.dispatch")

        from outbound.metrics import GAUGE_SOURCES

        from .metrics import backlog

        if backlog not in GAUGE_SOURCES:
            GAUGE_SOURCES.append(backlog)
