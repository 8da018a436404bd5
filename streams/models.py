from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from core import crypto
from servers.models import Server
from streams.rules import StreamError, check_new_stream_id


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
    # Postmark's SubscriptionManagementConfiguration: None, Postmark or Custom (broadcasts only).
    unsubscribe_handling_type = models.CharField(max_length=8, default="None")
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
        if self.pk is None and self.server_id is not None:
            try:
                check_new_stream_id(
                    self.stream_id, MessageStream.objects.filter(server_id=self.server_id)
                )
            except StreamError as exc:
                raise ValidationError({"stream_id": exc.message}) from None


class SmtpToken(models.Model):
    """SMTP credentials for exactly one stream: a public access key and a secret key.

    The secret is shown once, at creation. It is stored encrypted (see ``core.crypto``) because
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
    """Where a submission came in: Postmark's two SMTP endpoints (each takes mail for streams of
    its own type), the bounce MX, the inbound MX, or the HTTP send API (any stream that sends)."""

    TRANSACTIONAL = "transactional", "Transactional"
    BROADCAST = "broadcast", "Broadcast"
    BOUNCE = "bounce", "Bounce MX (asynchronous bounces and complaints)"
    INBOUND = "inbound", "Inbound MX (mail to servers' inbound addresses)"
    API = "api", "HTTP send API"


class CredentialKind(models.TextChoices):
    SERVER_TOKEN = "server_token", "Server API token"
    SMTP_TOKEN = "smtp_token", "SMTP token"
    IP = "ip", "IP credential"
    VERP = "verp", "VERP address (bounce MX)"
    INBOUND = "inbound", "Inbound address (inbound MX)"


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
