from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """Data removals: erasing every stored trace of an address across all servers."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "privacy"
    verbose_name = "Privacy"

    def ready(self):
        # The task, registered in every process (the API queues it by its function).
        import privacy.tasks  # noqa: F401
