import secrets

from django.conf import settings
from django.db import models

from core import crypto


class DeliveryType(models.TextChoices):
    LIVE = "Live", "Live"
    SANDBOX = "Sandbox", "Sandbox"


class TrackLinks(models.TextChoices):
    NONE = "None", "None"
    HTML_AND_TEXT = "HtmlAndText", "HTML and text"
    HTML_ONLY = "HtmlOnly", "HTML only"
    TEXT_ONLY = "TextOnly", "Text only"


class Color(models.TextChoices):
    """A server's colour in Postmark's lists (compat §12.2)."""

    PURPLE = "purple", "Purple"
    BLUE = "blue", "Blue"
    TURQUOISE = "turquoise", "Turquoise"
    GREEN = "green", "Green"
    RED = "red", "Red"
    YELLOW = "yellow", "Yellow"
    GREY = "grey", "Grey"
    ORANGE = "orange", "Orange"


def new_inbound_hash() -> str:
    """The 32 hex characters of a server's inbound address (``<hash>@<inbound domain>``)."""
    return secrets.token_hex(16)


class Server(models.Model):
    """A Postmark server: the unit that owns API tokens, message streams and their data."""

    name = models.CharField(max_length=100, unique=True)
    smtp_api_activated = models.BooleanField(
        "SMTP access",
        default=True,
        help_text="When off, SMTP authentication for this server fails (SmtpApiActivated).",
    )
    delivery_type = models.CharField(
        max_length=10,
        choices=DeliveryType.choices,
        default=DeliveryType.SANDBOX,
        help_text="A sandbox server accepts and records mail but delivers nothing.",
    )
    track_opens = models.BooleanField(default=False)
    track_links = models.CharField(
        max_length=12, choices=TrackLinks.choices, default=TrackLinks.NONE
    )
    enable_smtp_api_error_hooks = models.BooleanField(
        "SMTP API error webhooks",
        default=False,
        help_text="Post SMTP API error bounces to the bounce webhook too.",
    )
    strict_smtp = models.BooleanField(
        "strict SMTP mode",
        default=False,
        help_text="Also refuse in the SMTP session (5xx) what would become an SMTP API error: "
        "unknown stream, inactive recipients, bad metadata. Off = Postmark's behaviour.",
    )
    # Abuse control for sending (empty or 0 = no limit), SMTP and the HTTP send API together
    # (messages.limits): over it, MAIL gets 451 4.7.1 and a message sent over HTTP ErrorCode 429.
    smtp_messages_per_minute = models.PositiveIntegerField(
        "messages per minute",
        null=True,
        blank=True,
        help_text="At most this many messages through SMTP and the HTTP send API together in any "
        "minute; empty = no limit. Over it, SMTP answers 451 4.7.1 and the client retries later; "
        "the HTTP API answers ErrorCode 429. Reports to the bounce MX do not count.",
    )
    smtp_messages_per_day = models.PositiveIntegerField(
        "messages per day",
        null=True,
        blank=True,
        help_text="At most this many messages through SMTP and the HTTP send API together in any "
        "24 hours; empty = no limit.",
    )
    # Postmark's Server API fields (compat §12.1). The outbound hook URLs are not here: they are
    # the outbound stream's webhooks (``webhooks.server_hooks``); the two flags below are what
    # the bounce and open webhooks get when the Server API creates them.
    color = models.CharField(max_length=10, choices=Color.choices, default=Color.PURPLE)
    raw_email_enabled = models.BooleanField(
        "raw email in inbound webhooks", default=False, help_text="RawEmailEnabled."
    )
    post_first_open_only = models.BooleanField(
        default=False, help_text="PostFirstOpenOnly, for an open webhook made by the Server API."
    )
    include_bounce_content_in_hook = models.BooleanField(
        default=False,
        help_text="IncludeBounceContentInHook, for a bounce webhook made by the Server API.",
    )
    # Inbound: the address <inbound_hash>@INBOUND_DOMAIN and the InboundDomain take mail for this
    # server at the inbound MX; the app ``inbound`` posts it to inbound_hook_url.
    inbound_hash = models.CharField(max_length=32, default=new_inbound_hash, editable=False)
    inbound_domain = models.CharField(max_length=253, blank=True)
    inbound_hook_url = models.CharField("inbound hook URL", max_length=2000, blank=True)
    inbound_spam_threshold = models.PositiveSmallIntegerField(
        default=0, help_text="0 (off) to 30: inbound mail scoring higher is refused."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["inbound_domain"],
                condition=~models.Q(inbound_domain=""),
                name="unique_inbound_domain",
            )
        ]

    def __str__(self):
        return self.name

    @property
    def api_tokens(self) -> list[str]:
        return [t.token for t in self.tokens.all()]


class ApiTokenBase(models.Model):
    """A random API token, stored encrypted, found through an indexed keyed digest."""

    look_up_with: tuple[str, ...] = ()  # relations loaded with the token in one query

    token_digest = models.CharField(max_length=64, unique=True, editable=False)
    token_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    @property
    def token(self) -> str:
        return crypto.decrypt(self.token_encrypted)

    def set_token(self, token: str) -> None:
        self.token_digest = crypto.digest(token)
        self.token_encrypted = crypto.encrypt(token)

    @classmethod
    def find(cls, token: str):
        """The token record for ``token``, or None. The database sees only the digest; the final
        comparison is constant-time."""
        if not token:
            return None
        found = (
            cls._default_manager.select_related(*cls.look_up_with)
            .filter(token_digest__in=crypto.digests(token))
            .first()
        )
        if found is not None and crypto.same(found.token, token):
            return found
        return None

    def __str__(self):
        return f"…{self.token[-4:]}"


class ServerToken(ApiTokenBase):
    """A server API token (X-Postmark-Server-Token, and SMTP user name and password)."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="tokens")
    look_up_with = ("server",)

    class Meta:
        ordering = ["id"]
        verbose_name = "server API token"

    @classmethod
    def issue(cls, server: Server) -> "ServerToken":
        record = cls(server=server)
        record.set_token(crypto.new_api_token())
        record.save()
        return record


class AccountToken(ApiTokenBase):
    """An account API token (X-Postmark-Account-Token). It cannot send mail; the gateway
    recognises it to tell users who paste it by mistake to use a server token instead."""

    name = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "account API token"

    @classmethod
    def issue(cls, name: str = "") -> "AccountToken":
        record = cls(name=name)
        record.set_token(crypto.new_api_token())
        record.save()
        return record


class StaffServerAccess(models.Model):
    """Limits a staff user to some servers in the admin and the dashboard.

    A staff user sees no server until given access: the record's ``servers``, or every server
    with ``all_servers`` (an explicit grant; superusers always see everything). Nothing of any
    other server shows anywhere: lists, counts, filters, search, raw sources, the dashboard.
    Deleting a server never widens what a user sees.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="server_access"
    )
    servers = models.ManyToManyField(Server, blank=True, related_name="staff_access")
    all_servers = models.BooleanField(
        "all servers", default=False, help_text="Every server, present and future."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "staff server access"
        verbose_name_plural = "staff server access"

    def __str__(self):
        if self.all_servers:
            return f"{self.user}: all servers"
        return f"{self.user}: limited to {self.servers.count()} server(s)"

    @classmethod
    def server_ids_for(cls, user) -> frozenset[int] | None:
        """The ids of the servers ``user`` may see, or None for all of them. Non-staff (and
        inactive) users see none. Cached on the user object for the request."""
        cached = getattr(user, "_visible_server_ids", False)
        if cached is not False:
            return cached
        if not (user.is_active and user.is_staff):
            found = frozenset()
        elif user.is_superuser:
            found = None
        else:
            access = cls.objects.filter(user=user).first()
            if access is None:
                found = frozenset()
            elif access.all_servers:
                found = None
            else:
                found = frozenset(access.servers.values_list("id", flat=True))
        user._visible_server_ids = found
        return found
