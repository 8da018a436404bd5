"""Every task the beat schedules is one a worker has: a worker registers the tasks of each
installed app's ``tasks`` module (Celery's autodiscovery), and a task defined anywhere else would
be received as unregistered and dropped."""

import pytest
from django.conf import settings

from postmark_site.celery import app

pytestmark = pytest.mark.no_db


def test_every_scheduled_task_is_registered_in_a_worker():
    app.loader.import_default_modules()  # what a worker does at start-up
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled <= set(app.tasks), scheduled - set(app.tasks)
