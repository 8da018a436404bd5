from django.apps import AppConfig


class OutboundConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "outbound"
    verbose_name = "Messages"

    def ready(self):
        from domains.signals import confirmation_requested
        from outbound.confirmations import send_confirmation
        from outbound.events import record_subscription_change
        from streams.signals import subscription_changed

        subscription_changed.connect(record_subscription_change, dispatch_uid="outbound.events")
        confirmation_requested.connect(send_confirmation, dispatch_uid="outbound.confirmations")
