import django.utils.timezone
from django.db import migrations, models

# The column is added empty, so every existing event counts as dispatched (the webhook sweep's
# old id cursor covered them; ``webhooks`` 0002 marks the few it had not reached yet) and no row
# is rewritten: a nullable column without a default is added in place on PostgreSQL and SQLite.
# New events take the model's default (``timezone.now``) unless ``messages.events`` says no
# webhook can want them.
PENDING_COLUMN = models.DateTimeField(blank=True, editable=False, null=True)
PENDING_FIELD = models.DateTimeField(
    blank=True, default=django.utils.timezone.now, editable=False, null=True
)


class Migration(migrations.Migration):
    dependencies = [
        ("outbound", "0005_message_queries"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AddField("messageevent", "webhooks_pending_since", PENDING_COLUMN),
            ],
            state_operations=[
                migrations.AddField("messageevent", "webhooks_pending_since", PENDING_FIELD),
            ],
        ),
        migrations.AddIndex(
            model_name="messageevent",
            index=models.Index(
                condition=models.Q(("webhooks_pending_since__isnull", False)),
                fields=["webhooks_pending_since"],
                name="event_webhooks_pending",
            ),
        ),
    ]
