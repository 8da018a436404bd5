from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone

from bounces.models import Bounce
from core.leases import Leased
from core.mime import first_address
from servers.models import Server
from streams.models import CredentialKind, Endpoint, MessageStream


class Submission(Leased):
    """One accepted SMTP transaction, committed before the client hears 250: the raw message as
    received, its envelope, and who sent it, how and where. Processing starts from here."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        # Strict mode refused it in the SMTP session: record its errors, deliver nothing.
        REJECTED = "rejected", "Rejected"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    message_id = models.UUIDField("MessageID", unique=True)
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="submissions")
    # Known at AUTH for SMTP tokens and IP credentials; for server tokens it comes from the
    # X-PM-Message-Stream header during processing.
    stream = models.ForeignKey(
        MessageStream, on_delete=models.CASCADE, null=True, blank=True, related_name="submissions"
    )
    endpoint = models.CharField(max_length=13, choices=Endpoint.choices)
    credential_kind = models.CharField(max_length=12, choices=CredentialKind.choices)
    credential = models.CharField(
        max_length=64, blank=True, help_text="SMTP access key, IP credential, or '…' + token tail."
    )
    auth_mechanism = models.CharField(max_length=12, blank=True)
    client_address = models.GenericIPAddressField()
    client_helo = models.CharField(max_length=255, blank=True)
    tls_version = models.CharField(max_length=16, blank=True)
    mail_from = models.CharField(max_length=320, blank=True)
    rcpt_to = models.JSONField(default=list)
    size = models.PositiveIntegerField()
    raw = models.BinaryField()
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.ACCEPTED, db_index=True
    )
    received_at = models.DateTimeField(db_index=True)
    attempts = models.PositiveIntegerField(
        default=0,
        db_default=0,
        help_text="Tries of processing, each counted when it was taken (so a try that stopped "
        "its worker counts too): 1 for a submission processed at once; 0 for one the HTTP API "
        "processed while its client waited.",
    )
    last_error = models.CharField(
        max_length=100,
        blank=True,
        default="",
        db_default="",
        help_text="The error that ended its last try of processing, if one did (details in the "
        "logs under its MessageID); empty when the try is under way, succeeded, or its worker "
        "stopped.",
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["server", "received_at"])]

    def __str__(self):
        return str(self.message_id)


class OutboundMessage(Leased):
    """A processed message: what will be delivered, and what the API reports about it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        SANDBOXED = "sandboxed", "Sandboxed"
        BOUNCED = "bounced", "Bounced"
        FAILED = "failed", "Failed"

    message_id = models.UUIDField("MessageID", unique=True)
    submission = models.OneToOneField(
        Submission, on_delete=models.SET_NULL, null=True, blank=True, related_name="outbound"
    )
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="messages")
    stream = models.ForeignKey(MessageStream, on_delete=models.CASCADE, related_name="messages")
    from_address = models.CharField("From", max_length=998, blank=True)
    # The From header's address, lower-cased: what the Messages API's fromemail matches.
    from_email = models.CharField(
        max_length=320, blank=True, default="", db_default="", editable=False
    )
    to = models.JSONField(default=list, help_text="Addresses in the To header.")
    cc = models.JSONField(default=list, help_text="Addresses in the Cc header.")
    bcc = models.JSONField(default=list, help_text="Envelope recipients in neither To nor Cc.")
    recipients = models.JSONField(
        default=list, help_text="Active envelope recipients to deliver to."
    )
    subject = models.TextField(blank=True)
    tag = models.CharField(max_length=1000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    track_opens = models.BooleanField(default=False)
    track_links = models.CharField(max_length=12, default="None")
    message_id_header = models.CharField("Message-ID header", max_length=998, blank=True)
    size = models.PositiveIntegerField(default=0)
    content = models.BinaryField(help_text="The message as it will be delivered.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["server", "tag"]),
            models.Index(fields=["status"]),
            # The Messages API's filters (messages.queries), each in its order (newest first,
            # ties by id) so that a page is read from the index without a sort; tag and sender
            # first, so that the admin's search (every server) uses them too. On PostgreSQL,
            # trigram indexes on From and Subject and a GIN index on metadata too (migration 0003).
            models.Index(fields=["server", "stream", "-received_at", "-id"], name="message_recent"),
            models.Index(
                fields=["server", "stream", "status", "-received_at", "-id"],
                name="message_status_recent",
            ),
            models.Index(
                fields=["tag", "server", "stream", "-received_at", "-id"], name="message_tag_recent"
            ),
            models.Index(
                fields=["from_email", "server", "stream", "-received_at", "-id"],
                name="message_from_recent",
            ),
        ]

    def __str__(self):
        return str(self.message_id)

    def save(self, *args, **kwargs):
        if not self.from_email and self.from_address:
            self.from_email = first_address(self.from_address).lower()[:320]
        super().save(*args, **kwargs)


class Recipient(Leased):
    """Delivery state of one recipient of an outbound message.

    A worker takes the recipient (``leases``: a lease and ``attempts`` + 1, in one conditional
    UPDATE) before it sends, and writes each result only while it still holds it, so no two
    workers send to the same recipient. A lease that runs out (the worker died, or stalled past
    it) frees the recipient, and it is sent again: one left ``sending`` is *in doubt*, since the
    remote server may have taken the message just before the worker died."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DEFERRED = "deferred", "Deferred"
        DELIVERED = "delivered", "Delivered"
        BOUNCED = "bounced", "Bounced"
        FAILED = "failed", "Failed (gave up)"
        SANDBOXED = "sandboxed", "Sandboxed"

    message = models.ForeignKey(
        OutboundMessage, on_delete=models.CASCADE, related_name="deliveries"
    )
    email = models.CharField(max_length=320)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_reply = models.TextField(blank=True)
    delayed_reported = models.BooleanField(
        default=False, help_text="A Transient (or DnsError) bounce was recorded for a deferral."
    )
    errors = models.PositiveSmallIntegerField(
        default=0,
        db_default=0,
        help_text="Tries that ended in an unexpected error or whose worker never finished.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "email"], name="one_delivery_per_recipient")
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            # The Messages API's recipient filter (any letter case).
            models.Index(Upper("email"), name="recipient_email_upper"),
        ]

    def __str__(self):
        return f"{self.email} ({self.status})"


class MessageEvent(models.Model):
    """Something that happened to a message after processing; webhooks are posted from these."""

    class Type(models.TextChoices):
        DELIVERY = "Delivery", "Delivered"
        BOUNCE = "Bounce", "Bounced"
        SPAM_COMPLAINT = "SpamComplaint", "Spam complaint"
        OPEN = "Open", "Opened"
        CLICK = "Click", "Clicked"
        SUBSCRIPTION_CHANGE = "SubscriptionChange", "Subscription change"

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="events")
    stream = models.ForeignKey(
        MessageStream, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    outbound = models.ForeignKey(
        OutboundMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    message_id = models.UUIDField("MessageID", null=True, blank=True)
    type = models.CharField(max_length=20, choices=Type.choices)
    recipient = models.CharField(max_length=320, blank=True)
    bounce = models.ForeignKey(
        Bounce, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    details = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    # The outbox mark: when the event was recorded, as long as the webhook fan-out has yet to run
    # for it; empty once it has (or when no webhook could want it: ``messages.events``). The
    # webhook sweep takes every marked event older than its grace period, whatever order their
    # transactions committed in.
    webhooks_pending_since = models.DateTimeField(
        null=True, blank=True, default=timezone.now, editable=False
    )

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["server", "type", "-occurred_at"]),
            models.Index(fields=["message_id"]),
            # Only the events still waiting for their fan-out: a small index, whatever the table.
            models.Index(
                fields=["webhooks_pending_since"],
                condition=models.Q(webhooks_pending_since__isnull=False),
                name="event_webhooks_pending",
            ),
        ]

    def __str__(self):
        return f"{self.type} {self.recipient}"


class QueueSample(models.Model):
    """The queue gauges at one moment, sampled by the beat, so the admin's System page can show
    their trend without Prometheus. ``values`` maps a gauge name to {"count", "oldest_age_seconds"}.
    """

    taken_at = models.DateTimeField(db_index=True)
    values = models.JSONField(default=dict)

    class Meta:
        ordering = ["-taken_at"]

    def __str__(self):
        return f"queues at {self.taken_at:%Y-%m-%d %H:%M}"


class BulkRequest(Leased):
    """A POST /email/bulk request (compat §14): one content, shared fields and up to
    ``API_MAX_BULK_MESSAGES`` recipients' items, sent item by item in the background
    (``api.bulk``). ``processed`` items are done, each either released (accepted, as by
    POST /email) or failed; ``errors`` keeps the first failures for the tenant.

    Its lease (``leased_until``) says who answers for it until when: its queued task, or the
    worker sending it, which renews it after every chunk; ``claimed_at`` is that worker's claim
    (NULL while a task is queued and no worker has it). A request whose lease runs out is queued
    again by the sweep; ``attempts`` counts the workers' tries, and after
    ``BULK_ATTEMPTS`` of them it fails with its ``failure_reason``."""

    class Status(models.TextChoices):
        ACCEPTED = "Accepted"
        PROCESSING = "Processing"
        COMPLETED = "Completed"
        FAILED = "Failed"

    id = models.UUIDField(primary_key=True)
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="bulk_requests")
    stream_id = models.CharField(max_length=30)
    subject = models.TextField(blank=True)  # the unrendered template, as GET answers it
    content = models.JSONField(default=dict)  # the shared fields
    items = models.JSONField(default=list)  # the Messages, emptied once every one is done
    credential = models.CharField(max_length=100, blank=True)
    client_address = models.CharField(max_length=45, blank=True)
    tls_version = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACCEPTED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    released = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list)
    submitted_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    failure_reason = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["server", "-submitted_at"]),
            # The sweep's question: the unfinished requests whose lease ran out.
            models.Index(fields=["status", "leased_until"], name="bulk_request_sweep"),
        ]

    def __str__(self) -> str:
        return f"bulk {self.id} ({self.status})"
