from django.apps import AppConfig


class MessagesConfig(AppConfig):
    """The durable accept record, processing and the outbound messages.

    The label stays ``outbound``, the app's first name: its tables (``outbound_*``), migration
    history, content types and admin URLs carry over unchanged, so an installation upgrades with
    ``migrate`` alone. (``messages`` would also collide with ``django.contrib.messages``'s label.)
    """

    default_auto_field = "django.db.models.BigAutoField"
    name = "messages"
    label = "outbound"
    verbose_name = "Messages"

    def ready(self):
        from domains.signals import confirmation_requested
        from messages.confirmations import send_confirmation
        from messages.events import record_subscription_change
        from streams.signals import subscription_changed

        subscription_changed.connect(record_subscription_change, dispatch_uid="messages.events")
        confirmation_requested.connect(send_confirmation, dispatch_uid="messages.confirmations")
