"""The Celery application.

With ``CELERY_BROKER_URL`` set, workers are ordinary ``celery -A postmark_site worker`` processes on
RabbitMQ or Redis. With nothing set (the embedded default) the broker is kombu's filesystem
transport under the data directory, so the same tasks run in a real worker process with no
service to install.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postmark_site.settings")

app = Celery("postmark_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
