from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from servers import crypto
from servers.models import Server


class StreamType(models.TextChoices):
    TRANSACTIONAL = "Transactional", "Transactional"
    BROADCASTS = "Broadcasts", "Broadcasts"
    INBOUND = "Inbound", "Inbound"


class MessageStream(models.Model):
    """A server's message stream. ``stream_id`` is Postmark's stream ``ID`` (e.g. ``outbound``)."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="streams")
    stream_id = models.CharField("ID", max_length=30)
    name = models.CharField(max_length=100)
    message_stream_type = models.CharField(
        "type", max_length=13, choices=StreamType.choices, default=StreamType.TRANSACTIONAL
    )
    description = models.TextField(blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["server_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["server", "stream_id"], name="unique_stream_id_per_server"
            )
        ]

    def __str__(self):
        return f"{self.server.name} / {self.stream_id}"

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    @property
    def expected_purge_date(self):
        if self.archived_at is None:
            return None
        return self.archived_at + timezone.timedelta(days=settings.STREAM_PURGE_DAYS)

    def clean(self):
        from .services import StreamError, check_new_stream

        if self.pk is None and self.server_id is not None:
            try:
                check_new_stream(self.server, self.stream_id)
            except StreamError as exc:
                raise ValidationError({"stream_id": exc.message}) from None


class SmtpToken(models.Model):
    """SMTP credentials for exactly one stream: a public access key and a secret key.

    The secret is shown once, at creation. It is stored encrypted (see ``servers.crypto``) because
    CRAM-MD5 and DIGEST-MD5 need it on the server side; PLAIN and LOGIN compare against it too.
    """

    stream = models.ForeignKey(MessageStream, on_delete=models.CASCADE, related_name="smtp_tokens")
    access_key = models.CharField(max_length=64, unique=True, editable=False)
    secret_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_from = models.GenericIPAddressField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["id"]
        verbose_name = "SMTP token"

    def __str__(self):
        return self.access_key

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    def generate_credentials(self) -> str:
        """Give this (unsaved) token a new access key and secret; returns the secret, which is
        never available again once the caller drops it."""
        secret = crypto.new_secret_key()
        self.access_key = crypto.new_access_key()
        self.secret_encrypted = crypto.encrypt(secret)
        return secret

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class IpCredential(models.Model):
    """Hosts in ``cidr`` may submit to ``stream`` without AUTH (beyond Postmark, as Postal has).

    Off unless an operator creates one. It also lets HELO-only tools such as Postfix's
    ``smtp-source`` drive the gateway in benchmarks.
    """

    stream = models.ForeignKey(
        MessageStream, on_delete=models.CASCADE, related_name="ip_credentials"
    )
    cidr = models.CharField("CIDR", max_length=43, help_text="e.g. 192.0.2.0/24 or 127.0.0.1/32")
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "IP credential"

    def __str__(self):
        return f"{self.cidr} → {self.stream}"

    def clean(self):
        import ipaddress

        try:
            self.cidr = str(ipaddress.ip_network(self.cidr.strip(), strict=False))
        except ValueError:
            raise ValidationError({"cidr": f"'{self.cidr}' is not an IP network."}) from None


class Endpoint(models.TextChoices):
    """Postmark's two SMTP endpoints; each takes mail for streams of its own type."""

    TRANSACTIONAL = "transactional", "Transactional"
    BROADCAST = "broadcast", "Broadcast"
    BOUNCE = "bounce", "Bounce MX (asynchronous bounces and complaints)"


class CredentialKind(models.TextChoices):
    SERVER_TOKEN = "server_token", "Server API token"
    SMTP_TOKEN = "smtp_token", "SMTP token"
    IP = "ip", "IP credential"
    VERP = "verp", "VERP address (bounce MX)"


class Submission(models.Model):
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
    # When the sweep last queued it again (the gateway's own queuing counts from received_at).
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["server", "received_at"])]

    def __str__(self):
        return str(self.message_id)


class Suppression(models.Model):
    """An inactive recipient of one stream: mail to it is not sent (Postmark's suppressions)."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "HardBounce", "Hard bounce"
        SPAM_COMPLAINT = "SpamComplaint", "Spam complaint"
        MANUAL = "ManualSuppression", "Manual suppression"

    class Origin(models.TextChoices):
        RECIPIENT = "Recipient", "Recipient"
        CUSTOMER = "Customer", "Customer"
        ADMIN = "Admin", "Admin"

    stream = models.ForeignKey(MessageStream, on_delete=models.CASCADE, related_name="suppressions")
    email = models.CharField(max_length=320, help_text="Lower-case address.")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    origin = models.CharField(max_length=10, choices=Origin.choices)
    bounce = models.ForeignKey(
        "bounces.Bounce", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["stream", "email"], name="one_suppression_per_address")
        ]
        indexes = [models.Index(fields=["stream", "-created_at"])]

    def __str__(self):
        return f"{self.email} ({self.reason})"


class OutboundMessage(models.Model):
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
    # When the delivery task queued last is due to run; the sweep leaves it alone until then.
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["server", "stream", "-received_at"]),
            models.Index(fields=["server", "tag"]),
            models.Index(fields=["status"]),
        ]

    def __str__(self):
        return str(self.message_id)


class Recipient(models.Model):
    """Delivery state of one recipient of an outbound message.

    The state is committed before and after every SMTP exchange, so a task that runs again
    (a worker died, the broker redelivered) skips what is already delivered or bounced."""

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
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_reply = models.TextField(blank=True)
    delayed_reported = models.BooleanField(
        default=False, help_text="A Transient (or DnsError) bounce was recorded for a deferral."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "email"], name="one_delivery_per_recipient")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

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
        "bounces.Bounce", on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    details = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["server", "type", "-occurred_at"]),
            models.Index(fields=["message_id"]),
        ]

    def __str__(self):
        return f"{self.type} {self.recipient}"
