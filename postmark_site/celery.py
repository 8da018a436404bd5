"""The Celery application.

With ``CELERY_BROKER_URL`` set, workers are ordinary ``celery -A postmark_site worker`` processes on
RabbitMQ or Redis. With nothing set (the embedded default) the broker is kombu's filesystem
transport under the data directory, so the same tasks run in a real worker process with no
service to install.
"""

import os

from celery import Celery, signals

from core.fsqueue import register as register_fsqueue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postmark_site.settings")

register_fsqueue()
app = Celery("postmark_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _json_logs(logger=None, **kwargs):
    """A worker installs its own log handlers; with LOG_FORMAT=json they write JSON too."""
    from django.conf import settings

    from core.logcontext import use_json

    if settings.LOG_FORMAT == "json" and logger is not None:
        use_json(logger)
