from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from messages.events import event_committed
        from webhooks.dispatch import on_event_committed

        event_committed.connect(on_event_committed, dispatch_uid="webhooks.dispatch")

        from django.db.models.signals import post_delete, post_save

        from webhooks.dispatch import forget_webhook_streams
        from webhooks.models import Webhook

        for signal in (post_save, post_delete):
            signal.connect(forget_webhook_streams, sender=Webhook, dispatch_uid=f"hooks-{signal}")

        from messages.metrics import GAUGE_SOURCES
        from webhooks.metrics import backlog

        if backlog not in GAUGE_SOURCES:
            GAUGE_SOURCES.append(backlog)
