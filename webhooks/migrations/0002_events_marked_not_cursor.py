"""The webhook outbox is the events' own mark (``outbound`` 0006), not an id cursor: an event
whose transaction committed after the cursor moved past its id was never looked at again.

Events the old cursor had not reached yet are marked pending, so that none is skipped across the
upgrade (only those of streams with webhooks: the others have nothing to post). A webhook that
exists already has been caught up by the old sweep. The reverse is a no-op for the events; the
cursor comes back empty, and the old sweep starts again from the newest event, as on its first run.
"""

from django.db import migrations, models
from django.utils import timezone


def mark_events_after_the_cursor(apps, schema_editor):
    cursor = apps.get_model("webhooks", "WebhookSweepCursor").objects.filter(pk=1).first()
    if cursor is None:
        return  # the old sweep never ran: it would have started from the newest event
    hooked = apps.get_model("webhooks", "Webhook").objects.values("stream_id")
    apps.get_model("outbound", "MessageEvent").objects.filter(
        id__gt=cursor.last_event_id, stream_id__in=hooked
    ).update(webhooks_pending_since=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("outbound", "0006_event_webhooks_pending"),
        ("webhooks", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # Existing webhooks are caught up; a new one is not, until the sweep has looked.
            database_operations=[
                migrations.AddField(
                    "webhook", "events_caught_up", models.BooleanField(default=True)
                ),
            ],
            state_operations=[
                migrations.AddField(
                    "webhook",
                    "events_caught_up",
                    models.BooleanField(default=False, editable=False),
                ),
            ],
        ),
        migrations.RunPython(mark_events_after_the_cursor, migrations.RunPython.noop),
        migrations.DeleteModel(name="WebhookSweepCursor"),
    ]
