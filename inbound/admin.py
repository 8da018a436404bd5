"""The inbound activity (every message received for a server's inbound stream, its parsed JSON,
raw source and posts to the application) and the inbound rules, scoped by staff server access
like every other admin. Retry and bypass go through ``inbound.services``, as the API's do."""

import json
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST, require_safe

from inbound import queries, services, triggers
from inbound.models import InboundMessage, InboundRule
from servers.scoping import EstimatedCountPaginator, ScopedModelAdmin, change_url, source_response

# What a change page shows at most of the parsed JSON and of the raw source (the rest is in the
# download); an attachment's content is summarised, never shown.
MAX_SHOWN_JSON = 256 * 1024
MAX_SHOWN_SOURCE = 256 * 1024
S = InboundMessage.Status
RECENT_PERIODS = {"1d": ("Past 24 hours", 1), "7d": ("Past 7 days", 7), "30d": ("Past 30 days", 30)}


class ReceivedFilter(admin.SimpleListFilter):
    title = "received"
    parameter_name = "received"

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in RECENT_PERIODS.items()]

    def queryset(self, request, queryset):
        if self.value() in RECENT_PERIODS:
            days = RECENT_PERIODS[self.value()][1]
            return queries.filter_inbound(queryset, since=timezone.now() - timedelta(days=days))
        return queryset


def shown_json(payload) -> tuple[str, bool]:
    """The inbound JSON, indented, each attachment's content replaced by its size; and whether
    it was cut at ``MAX_SHOWN_JSON`` characters."""
    payload = dict(payload) if isinstance(payload, dict) else {}
    attachments = payload.get("Attachments")
    if isinstance(attachments, list):
        payload["Attachments"] = [
            {**a, "Content": f"({len(a['Content'])} characters of base64, not shown)"}
            if isinstance(a, dict) and isinstance(a.get("Content"), str)
            else a
            for a in attachments
        ]
    if isinstance(payload.get("RawEmail"), str):
        payload["RawEmail"] = "(the raw source, below)"
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    return text[:MAX_SHOWN_JSON], len(text) > MAX_SHOWN_JSON


@admin.register(InboundMessage)
class InboundMessageAdmin(ScopedModelAdmin):
    """Inbound activity: newest first, read-only, with Retry (failed) and Bypass (blocked)."""

    list_display = (
        "received_at",
        "status_display",
        "from_display",
        "subject_display",
        "original_recipient",
        "server",
    )
    list_display_links = ("received_at", "subject_display")
    list_filter = ("status", ReceivedFilter, "server")
    list_select_related = ("server",)
    search_fields = ("=message_id",)  # shows the box; get_search_results does the searching
    search_help_text = "A MessageID; a sender's or recipient's address; or part of the subject."
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    actions = ["retry_selected", "bypass_selected"]
    change_form_template = "admin/inbound/inboundmessage/change_form.html"
    fieldsets = (
        (None, {"fields": ("message_id", "server", "stream", "status", "blocked_reason")}),
        ("Message", {"fields": ("from_email", "from_name", "to", "cc", "original_recipient",
                                "mailbox_hash", "subject", "tag", "date", "spam_score",
                                "received_at")}),
        ("Posting to the inbound hook", {"fields": ("hook_url", "attempts", "next_attempt_at",
                                                    "last_response_code", "last_response",
                                                    "updated_at")}),
    )  # fmt: skip
    readonly_fields = tuple(f for _, o in fieldsets for f in o["fields"])

    def get_queryset(self, request):
        return super().get_queryset(request).defer("payload", "raw")

    def get_search_results(self, request, queryset, search_term):
        return queries.search_inbound(queryset, search_term), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_act_permission(self, request, obj=None):
        """Retry and bypass: the right to change inbound messages (the admin is read-only)."""
        return request.user.has_perm("inbound.change_inboundmessage")

    @admin.display(description="status", ordering="status")
    def status_display(self, obj):
        return queries.postmark_status(obj.status)

    @admin.display(description="from", ordering="from_email")
    def from_display(self, obj):
        if obj.from_name:
            return f"{obj.from_name} <{obj.from_email}>"
        return obj.from_email or "(none)"

    @admin.display(description="subject", ordering="subject")
    def subject_display(self, obj):
        return obj.subject[:80] or "(no subject)"

    @admin.display(description="inbound hook URL (now)")
    def hook_url(self, obj):
        return obj.server.inbound_hook_url or "(none set on the server)"

    # --- The change page --------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        message = self.get_queryset(request).defer(None).filter(pk=object_id).first()
        if message is not None:
            extra_context = {**(extra_context or {}), **self.page_context(request, message)}
        return super().change_view(request, object_id, form_url, extra_context)

    def page_context(self, request, message) -> dict:
        text, json_cut = shown_json(message.payload)
        raw = bytes(message.raw or b"")
        may_act = self.has_act_permission(request, message)
        return {
            "payload_json": text,
            "payload_cut": json_cut,
            "raw_text": raw[:MAX_SHOWN_SOURCE].decode("utf-8", "replace"),
            "raw_size": len(raw),
            "raw_cut": len(raw) > MAX_SHOWN_SOURCE,
            "source_url": reverse("admin:inbound_inboundmessage_source", args=[message.pk]),
            "retry_url": reverse("admin:inbound_inboundmessage_retry", args=[message.pk]),
            "bypass_url": reverse("admin:inbound_inboundmessage_bypass", args=[message.pk]),
            "can_retry": may_act and message.status == S.FAILED,
            "can_bypass": may_act and message.status == S.BLOCKED,
            "postmark_status": queries.postmark_status(message.status),
        }

    def admin_urls(self):
        return [
            ("<int:object_id>/source.eml", self.message_source, "inbound_inboundmessage_source"),
            ("<int:object_id>/retry/", self.retry_one, "inbound_inboundmessage_retry"),
            ("<int:object_id>/bypass/", self.bypass_one, "inbound_inboundmessage_bypass"),
        ]

    @method_decorator(require_safe)
    def message_source(self, request, object_id):
        message = self.scoped_object(request, object_id)
        return source_response(request, bytes(message.raw or b""), f"{message.message_id}.eml")

    def _act_on_one(self, request, object_id, action, verb: str):
        message = self.scoped_object(request, object_id)
        if not self.has_act_permission(request, message):
            raise PermissionDenied
        if action(message):
            messages.success(request, f"Message {message.message_id} {verb}: it is posted again.")
        else:
            status = queries.postmark_status(message.status)
            messages.error(request, f"Message {message.message_id} is {status}: not {verb}.")
        return HttpResponseRedirect(change_url(message))

    @method_decorator(require_POST)
    def retry_one(self, request, object_id):
        return self._act_on_one(request, object_id, services.retry, "retried")

    @method_decorator(require_POST)
    def bypass_one(self, request, object_id):
        return self._act_on_one(request, object_id, services.bypass, "bypassed")

    def _act_on_many(self, request, queryset, status, action, verb: str):
        done = sum(1 for message in queryset.filter(status=status) if action(message))
        skipped = queryset.count() - done
        self.message_user(request, f"{done} message(s) {verb}.", messages.SUCCESS)
        if skipped:
            state = queries.postmark_status(status)
            self.message_user(
                request,
                f"{skipped} message(s) skipped: only {state} ones can be.",
                messages.WARNING,
            )

    @admin.action(description="Retry posting selected failed messages", permissions=["act"])
    def retry_selected(self, request, queryset):
        self._act_on_many(request, queryset, S.FAILED, services.retry, "retried")

    @admin.action(description="Bypass rules for selected blocked messages", permissions=["act"])
    def bypass_selected(self, request, queryset):
        self._act_on_many(request, queryset, S.BLOCKED, services.bypass, "bypassed")


class InboundRuleForm(forms.ModelForm):
    """The rule normalised and checked as the API checks it (813 invalid, 810 duplicate)."""

    class Meta:
        model = InboundRule
        fields = ("server", "rule")
        help_texts = {"rule": "An address (someone@example.com) or a bare domain (example.com)."}

    def clean(self):
        data = super().clean()
        value, server = data.get("rule"), data.get("server")
        if value is None:
            return data
        try:
            data["rule"] = triggers.normalise_rule(value)
        except triggers.RuleError as exc:
            self.add_error("rule", exc.message)
            return data
        taken = InboundRule.objects.filter(server=server, rule=data["rule"])
        if self.instance.pk:
            taken = taken.exclude(pk=self.instance.pk)
        if server is not None and taken.exists():
            self.add_error("rule", f"{server} already blocks {data['rule']}.")
        return data


@admin.register(InboundRule)
class InboundRuleAdmin(ScopedModelAdmin):
    """Senders whose mail a server keeps as Blocked (Postmark's inbound rule triggers)."""

    form = InboundRuleForm
    list_display = ("rule", "server", "created_at")
    list_filter = ("server",)
    list_select_related = ("server",)
    search_fields = ("rule",)
    readonly_fields = ("created_at",)

    def get_fields(self, request, obj=None):
        return ("server", "rule") if obj is None else ("server", "rule", "created_at")
