from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from core.times import admin_time
from servers.access import masked
from servers.scoping import ScopedModelAdmin, change_url
from webhooks.deliveries import retry_now
from webhooks.guard import UnsafeUrl, check_url, split_credentials, validate_headers
from webhooks.models import Webhook, WebhookAttempt, WebhookDelivery
from webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from webhooks.trial import record_type_of, send_test

# --- Webhooks -------------------------------------------------------------------------------------


class WebhookForm(forms.ModelForm):
    """The URL is checked like the API does (http/https, SSRF guard); ``user:pass@`` in it moves
    to basic auth."""

    # The stored password is never rendered back into the page: blank keeps it.
    http_auth_password = forms.CharField(
        label="basic auth password",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the current password.",
    )
    clear_http_auth_password = forms.BooleanField(
        label="remove the basic auth password", required=False
    )

    class Meta:
        model = Webhook
        fields = [
            "stream",
            "url",
            "http_auth_username",
            "http_auth_password",
            "clear_http_auth_password",
            "http_headers",
            "delivery_enabled",
            "bounce_enabled",
            "bounce_include_content",
            "spam_complaint_enabled",
            "spam_complaint_include_content",
            "open_enabled",
            "open_post_first_open_only",
            "click_enabled",
            "subscription_change_enabled",
        ]

    def clean_url(self):
        clean, user, password = split_credentials(self.cleaned_data["url"])
        try:
            check_url(clean)
        except UnsafeUrl as exc:
            raise forms.ValidationError(exc.message) from None
        self._url_credentials = (user, password)
        return clean

    def clean_http_headers(self):
        try:
            return validate_headers(self.cleaned_data.get("http_headers"))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        cleaned = super().clean()
        user, password = getattr(self, "_url_credentials", ("", ""))
        if (user or password) and not (
            cleaned.get("http_auth_username") or cleaned.get("http_auth_password")
        ):
            cleaned["http_auth_username"], cleaned["http_auth_password"] = user, password
        return cleaned

    def save(self, commit=True):
        webhook = super().save(commit=False)
        webhook.http_auth_username = self.cleaned_data.get("http_auth_username") or ""
        password = self.cleaned_data.get("http_auth_password") or ""
        if password or self.cleaned_data.get("clear_http_auth_password") or not webhook.pk:
            webhook.http_auth_password = password
        if commit:
            webhook.save()
        return webhook


@admin.register(Webhook)
class WebhookAdmin(ScopedModelAdmin):
    form = WebhookForm
    list_display = ("id", "url", "stream", "triggers", "created_at")
    list_filter = ("stream__server",)
    search_fields = ("url",)
    list_select_related = ("stream__server",)
    readonly_fields = ("signing_secret_display", "signing_secret_masked", "recent_deliveries",
                       "created_at", "updated_at")  # fmt: skip
    actions = ["regenerate_signing_secret"]
    change_form_template = "admin/webhooks/webhook/change_form.html"
    fieldsets = (
        (None, {"fields": ("stream", "url", "http_auth_username", "http_auth_password",
                           "clear_http_auth_password", "http_headers")}),
        ("Triggers", {"fields": (
            "delivery_enabled",
            ("bounce_enabled", "bounce_include_content"),
            ("spam_complaint_enabled", "spam_complaint_include_content"),
            ("open_enabled", "open_post_first_open_only"),
            "click_enabled",
            "subscription_change_enabled",
        )}),
        ("Signature and activity", {"fields": ("signing_secret_display", "recent_deliveries",
                                               "created_at", "updated_at")}),
    )  # fmt: skip

    @admin.display(description="Triggers")
    def triggers(self, obj):
        names = [
            label
            for label, on in (
                ("Delivery", obj.delivery_enabled),
                ("Bounce", obj.bounce_enabled),
                ("SpamComplaint", obj.spam_complaint_enabled),
                ("Open", obj.open_enabled),
                ("Click", obj.click_enabled),
                ("SubscriptionChange", obj.subscription_change_enabled),
            )
            if on
        ]
        return ", ".join(names) or "(none)"

    def get_fieldsets(self, request, obj=None):
        """The signing secret in full only for users who may change the webhook (else masked)."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        swap = {"signing_secret_display": "signing_secret_masked"}
        return [
            (name, {**options, "fields": tuple(swap.get(f, f) if isinstance(f, str) else f
                                               for f in options["fields"])})
            for name, options in fieldsets
        ]  # fmt: skip

    @admin.display(description="signing secret")
    def signing_secret_masked(self, obj):
        return format_html(
            '<code>{}</code> <span class="pm-hint">(shown in full to those who may change this '
            "webhook)</span>",
            masked(obj.signing_secret),
        )

    @admin.display(description="signing secret")
    def signing_secret_display(self, obj):
        if not obj.pk:
            return "(generated when the webhook is saved)"

        return format_html(
            '<code>{}</code><br>{}: sha256=HMAC-SHA256(secret, {} + "." + body)',
            obj.signing_secret,
            SIGNATURE_HEADER,
            TIMESTAMP_HEADER,
        )

    @admin.display(description="recent deliveries")
    def recent_deliveries(self, obj):
        if not obj.pk:
            return "-"

        rows = []
        for delivery in obj.deliveries.select_related("event").order_by("-id")[:20]:
            last = delivery.attempt_log.order_by("-id").first()
            rows.append(
                (
                    reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]),
                    delivery.pk,
                    delivery.event.type,
                    delivery.event.recipient,
                    delivery.get_status_display(),
                    delivery.attempts,
                    admin_time(last.started_at) if last else "",
                    (last.status_code or last.error[:80]) if last else "",
                    f"{last.latency_ms} ms" if last else "",
                )
            )
        if not rows:
            return "(none yet)"
        body = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            rows,
        )
        return format_html(
            "<table><tr><th>delivery</th><th>event</th><th>recipient</th><th>status</th>"
            "<th>attempts</th><th>last try</th><th>answer</th><th>latency</th></tr>{}</table>",
            body,
        )

    def admin_urls(self):
        return [("<int:object_id>/send-test/", self.webhook_send_test, "webhooks_webhook_test")]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        webhook = self.get_object(request, object_id)
        if webhook is not None:
            extra_context = {
                **(extra_context or {}),
                "send_test_url": reverse("admin:webhooks_webhook_test", args=[webhook.pk]),
                "test_record_type": record_type_of(webhook),
                "can_send_test": self.has_change_permission(request, webhook),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    @method_decorator(require_POST)
    def webhook_send_test(self, request, object_id):
        """POST a sample payload to the webhook's URL now, and say what its receiver answered."""
        webhook = self.scoped_object(request, object_id, change=True)
        record_type, result = send_test(webhook)
        answer = f" — {result.excerpt[:200]}" if result.excerpt.strip() else ""
        posted = f"Test {record_type} payload posted to {webhook.url}"
        if result.ok:
            took = f"{result.latency_ms} ms"
            messages.success(request, f"{posted}: HTTP {result.status_code} in {took}{answer}")
        elif result.status_code:
            messages.error(request, f"{posted}: the receiver answered HTTP {result.status_code}"
                           f"{answer}")  # fmt: skip
        else:
            messages.error(request, f"Test {record_type} payload not delivered to "
                           f"{webhook.url}: {result.error}")  # fmt: skip
        return HttpResponseRedirect(change_url(webhook))

    @admin.action(description="Generate a new signing secret", permissions=["change"])
    def regenerate_signing_secret(self, request, queryset):
        for webhook in queryset:
            webhook.new_signing_secret()
            webhook.save(update_fields=["signing_secret_encrypted", "updated_at"])
        self.message_user(request, f"New signing secret for {queryset.count()} webhook(s).")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "status_code", "latency_ms", "response_excerpt", "error")
    readonly_fields = fields
    ordering = ("-id",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ScopedModelAdmin):
    list_display = (
        "id",
        "event_type",
        "recipient",
        "webhook",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "created_at",
    )
    list_filter = ("status", "event__type", "webhook__stream__server")
    search_fields = ("event__recipient", "webhook__url")
    list_select_related = ("event", "webhook__stream__server")
    actions = ["retry_now"]
    inlines = [WebhookAttemptInline]
    fields = (
        "webhook",
        "event_type",
        "recipient",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_retry_permission(self, request):
        # has_change_permission is False (deliveries are records): retrying needs the change right.
        return request.user.has_perm("webhooks.change_webhookdelivery")

    def has_change_permission(self, request, obj=None):
        return request.method in ("GET", "HEAD") and super().has_change_permission(request, obj)

    @admin.display(description="event")
    def event_type(self, obj):
        return obj.event.type

    @admin.display(description="recipient")
    def recipient(self, obj):
        return obj.event.recipient

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request, queryset):
        done = retry_now(queryset)
        self.message_user(request, f"Queued {done} delivery(ies) to be posted again.",
                          messages.SUCCESS)  # fmt: skip
