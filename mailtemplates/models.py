"""A server's Postmark templates (compat §9.2): Standard templates and the Layouts that wrap
them. An alias is unique per server in any letter case (Postmark looks aliases up that way);
deleting a template only marks it inactive, so ``GET /templates/{id}`` still answers."""

import hashlib

from django.db import models
from django.db.models.functions import Lower

from servers.models import Server


class Template(models.Model):
    class Type(models.TextChoices):
        STANDARD = "Standard"
        LAYOUT = "Layout"

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="mail_templates")
    name = models.CharField(max_length=255)
    # Empty when the template has none (only Standard templates may lack one).
    alias = models.CharField(max_length=255, blank=True, default="")
    subject = models.TextField(null=True, blank=True)
    html_body = models.TextField(null=True, blank=True)
    text_body = models.TextField(null=True, blank=True)
    template_type = models.CharField(max_length=8, choices=Type.choices, default=Type.STANDARD)
    # The alias of the Layout wrapping a Standard template ("" = none).
    layout_template = models.CharField(max_length=255, blank=True, default="")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["server_id", "id"]
        constraints = [
            models.UniqueConstraint(
                Lower("alias"),
                "server",
                condition=models.Q(active=True) & ~models.Q(alias=""),
                name="unique_active_template_alias_per_server",
            )
        ]

    def __str__(self):
        return self.alias or self.name

    @property
    def is_layout(self) -> bool:
        return self.template_type == self.Type.LAYOUT

    def version(self) -> str:
        """A digest of what rendering depends on (the compiled-template cache's key)."""
        parts = (self.subject or "", self.html_body or "", self.text_body or "")
        return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
