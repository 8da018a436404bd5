from django.db import models

from core.leases import Leased
from messages.models import Submission
from servers.models import Server
from streams.models import MessageStream


class InboundMessage(Leased):
    """One message received for a server's inbound stream: its envelope and header summary (what
    the listing filters on), the Postmark inbound JSON posted to the server's InboundHookUrl, the
    raw source, and the state of posting it (Postmark's statuses and retry schedule)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"
        BLOCKED = "blocked", "Blocked"
        SCHEDULED = "scheduled", "Scheduled"

    message_id = models.UUIDField("MessageID", unique=True)
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="inbound_messages")
    stream = models.ForeignKey(
        MessageStream, on_delete=models.CASCADE, related_name="inbound_messages"
    )
    # The durable accept it came from; one inbound message per submission (processing is
    # idempotent), and it outlives the submission's retention.
    submission = models.OneToOneField(
        Submission,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbound_message",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    blocked_reason = models.TextField(blank=True)
    from_email = models.CharField("From", max_length=320, blank=True)
    from_name = models.CharField("FromName", max_length=998, blank=True)
    to = models.TextField("To", blank=True, help_text="The To header as received.")
    cc = models.TextField("Cc", blank=True, help_text="The Cc header as received.")
    subject = models.TextField(blank=True)
    tag = models.CharField(max_length=1000, blank=True)
    mailbox_hash = models.CharField("MailboxHash", max_length=320, blank=True)
    original_recipient = models.CharField("OriginalRecipient", max_length=320, blank=True)
    date = models.CharField("Date header", max_length=998, blank=True)
    received_at = models.DateTimeField(db_index=True)
    payload = models.JSONField(
        default=dict, blank=True, help_text="Postmark's inbound JSON (body parts capped at 1 MB)."
    )
    raw = models.BinaryField(default=b"", blank=True, help_text="The source as received.")
    spam_score = models.FloatField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_response_code = models.PositiveIntegerField(null=True, blank=True)
    last_response = models.TextField(
        blank=True, help_text="The start of the last answer, or why the last post failed."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["server", "received_at"]),
            models.Index(fields=["server", "status"]),
            models.Index(fields=["server", "from_email"]),
            models.Index(fields=["server", "mailbox_hash"]),
            models.Index(fields=["status", "next_attempt_at"]),
        ]

    def __str__(self):
        return str(self.message_id)


class InboundRule(models.Model):
    """A blocked sender of one server's inbound mail: an address, or a bare domain (every address
    at it). Stored normalised (lower case, IDNA), so matching is a plain comparison."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="inbound_rules")
    rule = models.CharField(max_length=320)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["server", "rule"], name="unique_inbound_rule")
        ]

    def __str__(self):
        return self.rule
