from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('outbound', '0006_event_webhooks_pending'),
    ]

    operations = [
        migrations.AddField(
            model_name='submission',
            name='last_error',
            field=models.CharField(blank=True, db_default='', default='', help_text='The error that ended its last try of processing, if one did (details in the logs under its MessageID); empty when the try is under way, succeeded, or its worker stopped.', max_length=100),
        ),
        migrations.AlterField(
            model_name='submission',
            name='attempts',
            field=models.PositiveIntegerField(db_default=0, default=0, help_text='Tries of processing, each counted when it was taken (so a try that stopped its worker counts too): 1 for a submission processed at once; 0 for one the HTTP API processed while its client waited.'),
        ),
    ]
