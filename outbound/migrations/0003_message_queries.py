import django.db.models.functions.text
from django.db import migrations, models

POSTGRES_INDEXES = {
    # fromemail and subject are case-insensitive substring searches (UPPER(x) LIKE UPPER(%v%)).
    "message_from_trigram": (
        'ON outbound_outboundmessage USING gin (UPPER("from_address"::text) gin_trgm_ops)'
    ),
    "message_subject_trigram": (
        'ON outbound_outboundmessage USING gin (UPPER("subject"::text) gin_trgm_ops)'
    ),
    # metadata_<key>=<value> is a JSON containment test (metadata @> '{"key": "value"}').
    "message_metadata_gin": "ON outbound_outboundmessage USING gin (metadata jsonb_path_ops)",
}


def create_postgres_indexes(apps, schema_editor):
    """Indexes only PostgreSQL has: on SQLite these filters scan the server's messages."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, definition in POSTGRES_INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} {definition}")


def drop_postgres_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in POSTGRES_INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("outbound", "0002_recipient_lease"),
        ("servers", "0003_smtp_sending_limits"),
        ("streams", "0002_unsubscribe_handling_type"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                fields=["server", "stream", "status", "-received_at"], name="message_status_recent"
            ),
        ),
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                fields=["server", "stream", "tag", "-received_at"], name="message_tag_recent"
            ),
        ),
        migrations.AddIndex(
            model_name="recipient",
            index=models.Index(
                django.db.models.functions.text.Upper("email"), name="recipient_email_upper"
            ),
        ),
        migrations.RunPython(create_postgres_indexes, drop_postgres_indexes),
    ]
