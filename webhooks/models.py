import secrets

from django.db import models

from core import crypto
from core.leases import Leased
from messages.models import MessageEvent
from streams.models import MessageStream

# --- Webhooks (compat §4) -------------------------------------------------------------------------


class Webhook(models.Model):
    """A Postmark webhook of one message stream: where to POST which events.

    The basic-auth password and the signing secret are stored encrypted (``core.crypto``), like
    the API tokens: a database dump alone does not reveal them."""

    stream = models.ForeignKey(MessageStream, on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(
        "URL", max_length=2000, help_text="http:// or https://; user:pass@ moves to basic auth."
    )
    http_auth_username = models.CharField("basic auth user name", max_length=200, blank=True)
    http_auth_password_encrypted = models.TextField(blank=True, editable=False)
    http_headers = models.JSONField(
        "custom headers", default=list, blank=True, help_text='[{"Name": "...", "Value": "..."}]'
    )
    open_enabled = models.BooleanField("Open", default=False)
    open_post_first_open_only = models.BooleanField("Open: first open only", default=False)
    click_enabled = models.BooleanField("Click", default=False)
    delivery_enabled = models.BooleanField("Delivery", default=False)
    bounce_enabled = models.BooleanField("Bounce", default=False)
    bounce_include_content = models.BooleanField("Bounce: include content", default=False)
    spam_complaint_enabled = models.BooleanField("SpamComplaint", default=False)
    spam_complaint_include_content = models.BooleanField(
        "SpamComplaint: include content", default=False
    )
    subscription_change_enabled = models.BooleanField("SubscriptionChange", default=False)
    signing_secret_encrypted = models.TextField(editable=False)
    # Whether the sweep has looked for the events recorded while other processes did not yet know
    # of this webhook (``webhooks.deliveries.catch_up_new_webhooks``).
    events_caught_up = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.stream} → {self.url}"

    @property
    def http_auth_password(self) -> str:
        secret = self.http_auth_password_encrypted
        return crypto.decrypt(secret) if secret else ""

    @http_auth_password.setter
    def http_auth_password(self, value: str) -> None:
        self.http_auth_password_encrypted = crypto.encrypt(value) if value else ""

    @property
    def signing_secret(self) -> str:
        secret = self.signing_secret_encrypted
        return crypto.decrypt(secret) if secret else ""

    def new_signing_secret(self) -> str:
        secret = "whsec_" + secrets.token_urlsafe(32)
        self.signing_secret_encrypted = crypto.encrypt(secret)
        return secret

    def save(self, *args, **kwargs):
        if not self.signing_secret_encrypted:
            self.new_signing_secret()
        super().save(*args, **kwargs)


class WebhookDelivery(Leased):
    """One event to one webhook: the source of truth for posting it, retrying it and giving up.

    Tasks carry only this row's id. A try takes the row with a short lease
    (``core.leases``), posts outside any transaction, then records a ``WebhookAttempt``
    and the outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (retries exhausted)"
        STOPPED = "stopped", "Stopped (HTTP 403)"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(
        MessageEvent, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The exact body of the first try, kept once a try failed so that retries post the same bytes.
    payload = models.TextField(blank=True, editable=False)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "webhook"], name="one_delivery_per_webhook")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self):
        return f"{self.event.type} → webhook {self.webhook_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery and what came back."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True, help_text="At most 1 KB of the answer.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"attempt {self.number}: {self.status_code or self.error[:60]}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
