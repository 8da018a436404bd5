from django.db import models

from bounces.types import BOUNCE_TYPES, TYPE_CHOICES
from servers.models import Server
from streams.models import MessageStream


class Dump(models.Model):
    """A raw source shared by several bounces: the message as received, kept once for the
    SMTPApiErrors of all its recipients rather than copied into each."""

    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"dump {self.pk} ({len(self.text)} characters)"


class Bounce(models.Model):
    """A Postmark bounce record. Every field of the API object is derived from these columns."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="bounces")
    stream = models.ForeignKey(
        MessageStream, on_delete=models.SET_NULL, null=True, blank=True, related_name="bounces"
    )
    # The stream ID as reported (kept when the stream named by a message does not exist).
    message_stream = models.CharField(max_length=100)
    type = models.CharField(max_length=32, choices=TYPE_CHOICES)
    message_id = models.UUIDField("MessageID", null=True, blank=True)
    email = models.CharField(max_length=320)
    from_address = models.CharField("From", max_length=320, blank=True)
    subject = models.TextField(blank=True)
    tag = models.CharField(max_length=1000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    details = models.TextField(blank=True)
    content = models.TextField(
        blank=True, help_text="The dump: raw source of the bounce (its head, when shared)."
    )
    # The shared rest of the dump (the message as received), after ``content``.
    source = models.ForeignKey(
        Dump, on_delete=models.SET_NULL, null=True, blank=True, related_name="bounces"
    )
    bounced_at = models.DateTimeField()
    inactive = models.BooleanField(default=False)
    can_activate = models.BooleanField(default=False)

    class Meta:
        ordering = ["-bounced_at", "-id"]
        indexes = [
            models.Index(fields=["server", "message_stream", "-bounced_at"]),
            models.Index(fields=["server", "type", "-bounced_at"]),
            models.Index(fields=["server", "message_stream", "inactive", "-bounced_at"]),
            models.Index(fields=["server", "message_stream", "type", "-bounced_at"]),
            models.Index(fields=["server", "tag"]),
            models.Index(fields=["server", "message_id"]),
            models.Index(fields=["server", "email"]),
            # InactiveMails of /deliverystats, read from the index alone.
            models.Index(
                fields=["server", "email"],
                condition=models.Q(inactive=True),
                name="bounce_inactive_email",
            ),
            models.Index(fields=["bounced_at"]),
        ]
        # On PostgreSQL a trigram index also serves emailFilter (a substring search): see
        # migration 0002_initial.

    def __str__(self):
        return f"{self.type} {self.email}"

    @property
    def bounce_type(self):
        return BOUNCE_TYPES[self.type]

    @property
    def type_code(self) -> int:
        return self.bounce_type.code

    @property
    def name(self) -> str:
        return self.bounce_type.name

    @property
    def description(self) -> str:
        return self.bounce_type.description

    @property
    def dump_available(self) -> bool:
        return bool(self.content) or self.source_id is not None

    @property
    def dump_text(self) -> str:
        """The whole dump: this bounce's own text, then the shared source if there is one."""
        return self.content + (self.source.text if self.source_id is not None else "")


# --- Webhooks (compat §4) -------------------------------------------------------------------------
