"""Sender identity: the domains and single addresses a message's ``From`` may use.

Both are account-wide, as in Postmark: every server may send as a verified domain or a confirmed
sender signature. A domain owns DKIM keys (``DkimKey``): one *active* RSA key signs (with an
optional active Ed25519 key beside it); a rotation adds a *pending* key, which signs only once its
TXT record has been seen, and then the old key becomes *revoked*.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from core import crypto
from core import dkim_keys as keys


def return_path_default(name: str) -> str:
    return f"pm-bounces.{name}"


class Domain(models.Model):
    """A sending domain: its DKIM keys, its custom Return-Path and what DNS last showed."""

    name = models.CharField(max_length=253, unique=True)  # lower case, IDNA (ASCII) form
    return_path_domain = models.CharField("Return-Path domain", max_length=253, blank=True)
    # Verification state, as the last check found it (see domains.verification).
    dkim_verified = models.BooleanField("DKIM verified", default=False)
    return_path_verified = models.BooleanField("Return-Path verified", default=False)
    spf_verified = models.BooleanField("SPF verified", default=False)
    dkim_checked_at = models.DateTimeField("DKIM checked at", null=True, blank=True)
    return_path_checked_at = models.DateTimeField("Return-Path checked at", null=True, blank=True)
    spf_checked_at = models.DateTimeField("SPF checked at", null=True, blank=True)
    # What broke at the last check (a record that vanished or changed); empty when all is well.
    dns_problem = models.TextField("DNS problem", blank=True)
    dns_problem_since = models.DateTimeField("DNS problem since", null=True, blank=True)
    # A verified record that DNS stops showing keeps its flag for a grace period (see
    # domains.grace): when its definite failed checks in a row began, and how many there were.
    dkim_failing_since = models.DateTimeField("DKIM failing since", null=True, blank=True)
    dkim_failed_checks = models.PositiveIntegerField("DKIM failed checks", default=0)
    return_path_failing_since = models.DateTimeField(
        "Return-Path failing since", null=True, blank=True
    )
    return_path_failed_checks = models.PositiveIntegerField("Return-Path failed checks", default=0)
    periodic_checks = models.BooleanField(
        "periodic DNS checks",
        default=True,
        help_text="Off: the periodic re-check leaves this domain alone (the demo's domain, whose "
        "records no DNS publishes). Verify now still checks it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def return_path_cname_value(self) -> str:
        """Where the Return-Path domain's CNAME must point: the service's bounce host."""
        return settings.BOUNCE_DOMAIN

    @property
    def spf_host(self) -> str:
        return self.name

    @property
    def spf_text_value(self) -> str:
        """The informational SPF record: the domain's own hosts plus the service's."""
        return f"v=spf1 a mx include:{settings.SPF_INCLUDE_DOMAIN} ~all"

    def keys_in(self, state: str, algorithm: str = keys.RSA):
        return [k for k in self.keys.all() if k.state == state and k.algorithm == algorithm]

    def key(self, state: str, algorithm: str = keys.RSA):
        """The newest key of ``algorithm`` in ``state``, or None."""
        found = sorted(self.keys_in(state, algorithm), key=lambda k: k.pk, reverse=True)
        return found[0] if found else None


class DkimKey(models.Model):
    """One DKIM key pair of a domain, published at ``<selector>._domainkey.<domain>``."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"  # made, its TXT record not yet seen: never signs
        ACTIVE = "active", "Active"  # its record was seen: signs
        REVOKED = "revoked", "Revoked"  # replaced by a newer key: signs no more

    class Algorithm(models.TextChoices):
        RSA = keys.RSA, "RSA 2048 (rsa-sha256)"
        ED25519 = keys.ED25519, "Ed25519 (ed25519-sha256)"

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="keys")
    selector = models.CharField(max_length=63)
    algorithm = models.CharField(max_length=8, choices=Algorithm.choices, default=keys.RSA)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    private_key_encrypted = models.TextField(editable=False)
    public_key = models.TextField(editable=False)  # base64, as in the TXT record's p=
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["domain_id", "id"]
        verbose_name = "DKIM key"
        constraints = [
            models.UniqueConstraint(fields=["domain", "selector"], name="unique_dkim_selector")
        ]

    def __str__(self):
        return f"{self.host} ({self.algorithm}, {self.state})"

    @classmethod
    def generate(cls, domain: Domain, algorithm: str = keys.RSA, state: str = State.PENDING):
        """A new key pair for ``domain``, with a fresh timestamped selector (Postmark's form,
        e.g. ``20261130134500pm``; Ed25519 selectors end in ``ed``)."""
        private_pem, public = keys.generate(algorithm)
        stamp = timezone.now().strftime("%Y%m%d%H%M%S")
        suffix = "pm" if algorithm == keys.RSA else "ed"
        selector = f"{stamp}{suffix}"
        taken = set(domain.keys.values_list("selector", flat=True))
        counter = 1
        while selector in taken:
            counter += 1
            selector = f"{stamp}{counter}{suffix}"
        return cls.objects.create(
            domain=domain,
            selector=selector,
            algorithm=algorithm,
            state=state,
            private_key_encrypted=crypto.encrypt(private_pem),
            public_key=public,
            activated_at=timezone.now() if state == cls.State.ACTIVE else None,
        )

    @property
    def host(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.name}"

    @property
    def text_value(self) -> str:
        return keys.txt_value(self.algorithm, self.public_key)

    def private_key(self):
        return keys.load_private_key(self.private_key_encrypted)


class SenderSignature(models.Model):
    """A single From address, confirmed through a signed link sent to it (or by an operator)."""

    email = models.CharField("From address", max_length=320, unique=True)  # lower case
    name = models.CharField(max_length=255, blank=True)
    reply_to = models.CharField("Reply-To address", max_length=320, blank=True)
    return_path_domain = models.CharField("Return-Path domain", max_length=253, blank=True)
    confirmation_note = models.TextField("personal note", blank=True, max_length=400)
    confirmed = models.BooleanField(default=False)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["email"]
        verbose_name = "sender signature"

    def __str__(self):
        return self.email

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


class ConfirmationSent(models.Model):
    """One confirmation message sent to an address: what the limits on confirmation messages
    count (``domains.confirmation``). Kept by address, not by signature, so that deleting and
    adding a signature again starts no new count; rows older than a day are pruned."""

    email = models.CharField(max_length=320)
    sent_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["sent_at"]
        indexes = [models.Index(fields=["email", "sent_at"], name="confirmation_sent_email")]

    def __str__(self):
        return f"{self.email} at {self.sent_at:%Y-%m-%d %H:%M:%S}"
