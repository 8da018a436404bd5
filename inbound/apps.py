from django.apps import AppConfig


class InboundConfig(AppConfig):
    """Inbound processing: mail to a server's inbound address, parsed into Postmark's inbound
    JSON and posted to the server's InboundHookUrl."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "inbound"
    verbose_name = "Inbound"

    def ready(self):
        from inbound import intake
        from messages.intake import Intake, register
        from streams.models import Endpoint

        # Processing hands the inbound MX's submissions to this app (messages cannot import it).
        register(Endpoint.INBOUND, Intake(read=intake.read, store=intake.store, fail=intake.fail))
        # The tasks, registered in every process (posting.publish queues them by name).
        import inbound.tasks  # noqa: F401
        from inbound.metrics import backlog
        from messages.metrics import GAUGE_SOURCES

        if backlog not in GAUGE_SOURCES:
            GAUGE_SOURCES.append(backlog)
