from datetime import timedelta

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_safe

from messages import queries, viewer
from messages.models import OutboundMessage, Recipient, Submission
from servers.scoping import EstimatedCountPaginator, ScopedModelAdmin, source_response
from streams.admin import StreamFilter


@admin.register(Submission)
class SubmissionAdmin(ScopedModelAdmin):
    """Accepted SMTP transactions, as received (read-only)."""

    list_display = (
        "message_id",
        "received_at",
        "server",
        "stream",
        "endpoint",
        "credential_kind",
        "mail_from",
        "size",
        "status",
    )
    list_filter = ("status", "endpoint", "credential_kind", "server")
    list_select_related = ("server", "stream__server")
    search_fields = ("=message_id", "mail_from")
    # No date_hierarchy: its DISTINCT over every row costs ~300 ms at a million submissions.
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    exclude = ("raw",)
    readonly_fields = ("raw_source",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("raw")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="raw source")
    def raw_source(self, obj):
        raw = bytes(obj.raw)
        if not raw and obj.status != Submission.Status.ACCEPTED:
            # Kept once: as the outbound message, or as the dump of its SMTP API errors.
            return "Not kept once processed: see the message, or the SMTP API errors' dumps."
        return format_html(
            '<pre style="white-space: pre-wrap">{}</pre>', raw.decode("utf-8", "replace")
        )


class RecipientInline(admin.TabularInline):
    model = Recipient
    fields = ("email", "status", "attempts", "next_attempt_at", "last_reply", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PostmarkStatusFilter(admin.SimpleListFilter):
    """Postmark's statuses (queued, sent, processed), read from ours as the Messages API does."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(status, status.capitalize()) for status in queries.STATUSES]

    def queryset(self, request, queryset):
        if self.value() in queries.STATUSES:
            return queries.with_status(queryset, self.value())
        return queryset


RECENT_PERIODS = {"1d": ("Past 24 hours", 1), "7d": ("Past 7 days", 7), "30d": ("Past 30 days", 30)}


class ReceivedFilter(admin.SimpleListFilter):
    """Messages received within a recent period (the Messages API's ``fromdate``)."""

    title = "received"
    parameter_name = "received"

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in RECENT_PERIODS.items()]

    def queryset(self, request, queryset):
        if self.value() in RECENT_PERIODS:
            days = RECENT_PERIODS[self.value()][1]
            return queries.filter_messages(queryset, since=timezone.now() - timedelta(days=days))
        return queryset


@admin.register(OutboundMessage)
class OutboundMessageAdmin(ScopedModelAdmin):
    """The activity list: processed messages, newest first, with a per-message timeline."""

    list_display = (
        "received_at",
        "subject_display",
        "recipients_display",
        "tag",
        "status",
        "server",
        "stream_display",
    )
    list_display_links = ("received_at", "subject_display")
    list_filter = (
        PostmarkStatusFilter,
        ReceivedFilter,
        "server",
        StreamFilter,
        "stream__message_stream_type",
    )
    list_select_related = ("server", "stream")
    search_fields = ("=tag",)  # shows the search box; get_search_results does the searching
    search_help_text = (
        "A MessageID; a recipient's or sender's address; or part of the subject, or a whole tag."
    )
    ordering = ("-id",)  # the primary key's index: no sort of a million rows
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    inlines = [RecipientInline]
    fields = (
        "message_id",
        "server",
        "stream",
        "status",
        "from_address",
        "subject",
        "tag",
        "metadata",
        "track_opens",
        "track_links",
        "message_id_header",
        "size",
        "received_at",
        "processed_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("content")

    def get_search_results(self, request, queryset, search_term):
        # The Messages API's own query functions, so that both find the same messages.
        return queries.search_messages(queryset, search_term), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_deliver_permission(self, request):
        # Messages are records (no change form); acting on their delivery needs the change right.
        return request.user.has_perm(f"{self.opts.app_label}.change_outboundmessage")

    @admin.display(description="subject", ordering="subject")
    def subject_display(self, obj):
        return obj.subject[:80] or "(no subject)"

    @admin.display(description="recipients")
    def recipients_display(self, obj):
        first = obj.recipients[:2]
        more = len(obj.recipients) - len(first)
        return ", ".join(first) + (f" +{more}" if more > 0 else "")

    @admin.display(description="stream", ordering="stream__stream_id")
    def stream_display(self, obj):
        return obj.stream.stream_id

    def admin_urls(self):
        return [
            ("<int:object_id>/source.eml", self.message_source, "outbound_outboundmessage_source"),
            ("<int:object_id>/html/", self.message_html, "outbound_outboundmessage_html"),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The timeline (events, bounces, webhook posts) comes from the admin site, which sees
        # every app: see PostmarkAdminSite.change_page_context.
        message = self.get_object(request, object_id)
        if message is not None:
            statuses = dict(message.deliveries.values_list("email", "status"))
            viewed = viewer.view(message, {k.lower(): v for k, v in statuses.items()})
            extra_context = {
                **(extra_context or {}),
                "source_url": reverse("admin:outbound_outboundmessage_source", args=[message.pk]),
                "html_url": reverse("admin:outbound_outboundmessage_html", args=[message.pk]),
                "viewed": viewed,
                "viewed_people": [("To", viewed.to), ("Cc", viewed.cc), ("Bcc", viewed.bcc)],
                # The changelist's delivery actions (delivery.admin), offered while it waits.
                "delivery_actions": message.status == OutboundMessage.Status.QUEUED
                and self.has_deliver_permission(request)
                and "retry_deferred_now" in self.get_actions(request),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    @method_decorator(require_safe)
    @method_decorator(xframe_options_sameorigin)
    def message_html(self, request, object_id):
        """The HTML part alone, for the viewer's sandboxed frame (``messages.viewer``)."""
        return viewer.html_document(self.scoped_object(request, object_id))

    @method_decorator(require_safe)
    def message_source(self, request, object_id):
        message = self.scoped_object(request, object_id)
        return source_response(request, bytes(message.content), f"{message.message_id}.eml")
