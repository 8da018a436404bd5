from django.db import migrations, models


def broadcasts_use_postmark(apps, schema_editor):
    """Postmark's default for existing broadcast streams: its own unsubscribe handling."""
    MessageStream = apps.get_model("streams", "MessageStream")
    MessageStream.objects.filter(message_stream_type="Broadcasts").update(
        unsubscribe_handling_type="Postmark"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="messagestream",
            name="unsubscribe_handling_type",
            field=models.CharField(default="None", max_length=8),
        ),
        migrations.RunPython(broadcasts_use_postmark, migrations.RunPython.noop),
    ]
