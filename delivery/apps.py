from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    """Relaying outbound messages: transport, connections, claims and outcomes (no models)."""

    name = "delivery"
    verbose_name = "Delivery"

    def ready(self):
        from delivery.tasks import queue_new_messages
        from messages.signals import messages_queued

        messages_queued.connect(queue_new_messages, dispatch_uid="delivery.tasks")
