import django.db.models.functions.text
from django.db import migrations, models

POSTGRES_INDEXES = {
    # fromemail without "@" and subject are case-insensitive substring searches
    # (UPPER(x) LIKE UPPER(%v%)).
    "message_from_trigram": (
        'ON outbound_outboundmessage USING gin (UPPER("from_address"::text) gin_trgm_ops)'
    ),
    "message_subject_trigram": (
        'ON outbound_outboundmessage USING gin (UPPER("subject"::text) gin_trgm_ops)'
    ),
    # metadata_<key>=<value> is a JSON containment test (metadata @> '{"key": "value"}').
    "message_metadata_gin": "ON outbound_outboundmessage USING gin (metadata jsonb_path_ops)",
}


# A stream belongs to one server: without this the planner multiplies the two selectivities,
# expects a tenth of a stream's messages, and sorts a deep page instead of reading the index.
SERVER_STREAM_STATISTICS = (
    "CREATE STATISTICS IF NOT EXISTS message_server_stream (dependencies) "
    "ON server_id, stream_id FROM outbound_outboundmessage"
)


def create_postgres_indexes(apps, schema_editor):
    """Indexes only PostgreSQL has: on SQLite these filters scan the server's messages."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, definition in POSTGRES_INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} {definition}")
    schema_editor.execute(SERVER_STREAM_STATISTICS)


def drop_postgres_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP STATISTICS IF EXISTS message_server_stream")
        for name in POSTGRES_INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def fill_from_email(apps, schema_editor):
    """The From address of the messages stored before the column existed."""
    from core.mime import first_address

    OutboundMessage = apps.get_model("outbound", "OutboundMessage")
    rows = OutboundMessage.objects.filter(from_email="").exclude(from_address="")
    batch = []
    for message in rows.only("id", "from_address").iterator(chunk_size=2000):
        message.from_email = first_address(message.from_address).lower()[:320]
        batch.append(message)
        if len(batch) >= 2000:
            OutboundMessage.objects.bulk_update(batch, ["from_email"])
            batch = []
    OutboundMessage.objects.bulk_update(batch, ["from_email"])


class Migration(migrations.Migration):
    dependencies = [
        ("outbound", "0004_queue_sample"),
        ("servers", "0003_smtp_sending_limits"),
        ("streams", "0002_unsubscribe_handling_type"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="outboundmessage",
            name="outbound_ou_server__82896b_idx",
        ),
        migrations.AddField(
            model_name="outboundmessage",
            name="from_email",
            field=models.CharField(
                blank=True, db_default="", default="", editable=False, max_length=320
            ),
        ),
        migrations.RunPython(fill_from_email, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                fields=["server", "stream", "-received_at", "-id"], name="message_recent"
            ),
        ),
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                fields=["server", "stream", "status", "-received_at", "-id"],
                name="message_status_recent",
            ),
        ),
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                fields=["tag", "server", "stream", "-received_at", "-id"], name="message_tag_recent"
            ),
        ),
        migrations.AddIndex(
            model_name="outboundmessage",
            index=models.Index(
                fields=["from_email", "server", "stream", "-received_at", "-id"],
                name="message_from_recent",
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
