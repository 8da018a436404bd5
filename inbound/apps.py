from django.apps import AppConfig


class InboundConfig(AppConfig):
    """Inbound processing: mail to a server's inbound address, parsed into Postmark's inbound
    JSON and posted to the server's InboundHookUrl."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "inbound"
    verbose_name = "Inbound"
