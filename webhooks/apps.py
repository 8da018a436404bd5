from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from messages.events import FAN_OUT_WANTED, event_committed
        from webhooks.fanout import fan_out_wanted, on_event_committed

        event_committed.connect(on_event_committed, dispatch_uid="webhooks.fanout")
        if fan_out_wanted not in FAN_OUT_WANTED:
            FAN_OUT_WANTED.append(fan_out_wanted)

        from django.db.models.signals import post_delete, post_save

        from webhooks.fanout import forget_webhook_streams
        from webhooks.models import Webhook

        for signal in (post_save, post_delete):
            signal.connect(forget_webhook_streams, sender=Webhook, dispatch_uid=f"hooks-{signal}")

        # The tasks, registered in every process: fanout.publish queues "webhooks.post" by name.
        import webhooks.tasks  # noqa: F401
        from messages.metrics import GAUGE_SOURCES
        from webhooks.metrics import backlog

        if backlog not in GAUGE_SOURCES:
            GAUGE_SOURCES.append(backlog)
