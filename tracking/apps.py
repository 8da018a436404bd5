from django.apps import AppConfig


class TrackingConfig(AppConfig):
    """Open and click tracking: rewriting, tokens, the public endpoints (no models)."""

    name = "tracking"
    verbose_name = "Tracking"
