"""The webhook tasks keep their names, and a process that only set Django up (a web process, the
SMTP gateway) has them registered: ``fanout.publish`` queues ``webhooks.post`` by its name."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

from webhooks import fanout, tasks

pytestmark = pytest.mark.no_db

REGISTERED = """
import django
django.setup()
from postmark_site.celery import app
print(sorted(name for name in app.tasks.keys() if name.startswith("webhooks.")))
"""


def test_the_task_names_never_change():
    assert tasks.post.name == fanout.POST_TASK == "webhooks.post"
    assert tasks.webhook_sweep.name == "webhooks.sweep"


def test_django_setup_alone_registers_the_tasks():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "postmark_site.settings"}
    run = subprocess.run(
        [sys.executable, "-c", REGISTERED],
        capture_output=True,
        text=True,
        check=True,
        cwd=settings.BASE_DIR,
        env=env,
    )
    assert run.stdout.strip() == "['webhooks.post', 'webhooks.sweep']"
