import uuid

from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

from servers.admin import EstimatedCountPaginator, scope_queryset

from .models import (
    IpCredential,
    MessageStream,
    OutboundMessage,
    Recipient,
    SmtpToken,
    StreamType,
    Submission,
    Suppression,
)
from .services import check_smtp_token_allowed


class StreamFilter(admin.SimpleListFilter):
    """Filter by message stream, naming each as "server / stream" in one query, and offering
    only the streams of the servers the user may see."""

    title = "message stream"
    parameter_name = "stream__id__exact"

    def lookups(self, request, model_admin):
        streams = scope_queryset(
            MessageStream.objects.select_related("server").only("id", "stream_id", "server__name"),
            request.user,
        ).order_by("server_id", "id")
        return [(str(s.pk), f"{s.server.name} / {s.stream_id}") for s in streams]

    def queryset(self, request, queryset):
        if self.value():
            try:
                return queryset.filter(stream_id=int(self.value()))
            except ValueError:
                return queryset.none()
        return queryset


class SmtpTokenInline(admin.TabularInline):
    model = SmtpToken
    fields = ("access_key", "created_at", "last_used_at", "last_used_from", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(MessageStream)
class MessageStreamAdmin(admin.ModelAdmin):
    list_display = ("stream_id", "name", "server", "message_stream_type", "archived_at")
    list_filter = ("message_stream_type", "server")
    search_fields = ("stream_id", "name", "server__name")
    list_select_related = ("server",)
    inlines = [SmtpTokenInline]
    actions = ["archive", "unarchive"]
    change_form_template = "admin/streams/messagestream/change_form.html"

    def get_readonly_fields(self, request, obj=None):
        # A stream's server, ID and type are fixed once it exists, as in Postmark.
        if obj is not None:
            return ("server", "stream_id", "message_stream_type", "archived_at", "created_at")
        return ()

    def get_fields(self, request, obj=None):
        fields = ["server", "stream_id", "message_stream_type", "name", "description"]
        if obj is not None:
            fields += ["archived_at", "created_at"]
        return fields

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        extra_context["generate_token_url"] = (
            reverse("admin:streams_smtptoken_add") + f"?stream={object_id}"
        )
        stream = self.get_object(request, object_id)
        if stream is not None:
            extra_context.update(self.panels(request, stream))
        return super().change_view(request, object_id, form_url, extra_context)

    def panels(self, request, stream):
        """What the stream page shows below the form: tokens, webhooks, tracking, suppressions."""
        try:
            webhooks = reverse("admin:bounces_webhook_changelist")
        except NoReverseMatch:
            webhooks = "/admin/bounces/webhook/"
        suppressions = Suppression.objects.filter(stream=stream)
        return {
            "stream": stream,
            "can_change_stream": self.has_change_permission(request, stream),
            "smtp_tokens": list(stream.smtp_tokens.order_by("revoked_at", "-id")),
            "can_have_tokens": stream.message_stream_type != StreamType.INBOUND,
            "webhooks_url": f"{webhooks}?stream__id__exact={stream.pk}",
            "server_url": reverse("admin:servers_server_change", args=[stream.server_id]),
            "suppression_count": suppressions.count(),
            "latest_suppressions": list(suppressions.order_by("-created_at", "-id")[:10]),
            "suppressions_url": reverse(
                "admin:streams_messagestream_suppressions", args=[stream.pk]
            ),
        }

    @admin.action(description="Archive selected streams")
    def archive(self, request, queryset):
        count = (
            queryset.filter(archived_at__isnull=True)
            .exclude(stream_id__in=["outbound", "inbound"])
            .update(archived_at=timezone.now())
        )
        self.message_user(request, f"{count} stream(s) archived (default streams cannot be).")

    @admin.action(description="Unarchive selected streams")
    def unarchive(self, request, queryset):
        count = queryset.update(archived_at=None)
        self.message_user(request, f"{count} stream(s) unarchived.")


@admin.register(SmtpToken)
class SmtpTokenAdmin(admin.ModelAdmin):
    list_display = ("access_key", "stream", "created_at", "last_used_at", "revoked_at")
    list_filter = ("stream__server", "stream__message_stream_type")
    search_fields = ("access_key", "stream__stream_id", "stream__server__name")
    list_select_related = ("stream__server",)
    readonly_fields = ("access_key", "created_at", "last_used_at", "last_used_from", "revoked_at")
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["stream"]
        return ["stream", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("stream", *self.readonly_fields)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "stream":
            kwargs["queryset"] = (
                MessageStream.objects.select_related("server")
                .filter(archived_at__isnull=True)
                .exclude(message_stream_type=StreamType.INBOUND)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        # Tokens are immutable; viewing is allowed, changing means revoking or generating anew.
        return False

    def save_model(self, request, obj, form, change):
        check_smtp_token_allowed(obj.stream)  # the form's queryset already offers no other
        request._new_smtp_secret = obj.generate_credentials()
        obj.save()

    def response_add(self, request, obj, post_url_continue=None):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "token": obj,
            "secret": request._new_smtp_secret,
            "title": "SMTP token generated",
        }
        return TemplateResponse(request, "admin/streams/smtptoken/secret.html", context)

    @admin.action(description="Revoke selected SMTP tokens")
    def revoke(self, request, queryset):
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token.revoke()
            count += 1
        self.message_user(request, f"{count} SMTP token(s) revoked.", messages.SUCCESS)


@admin.register(IpCredential)
class IpCredentialAdmin(admin.ModelAdmin):
    list_display = ("cidr", "stream", "description", "created_at", "revoked_at")
    list_filter = ("stream__server",)
    list_select_related = ("stream__server",)
    search_fields = ("cidr", "description")
    fields = ("stream", "cidr", "description", "created_at", "revoked_at")
    readonly_fields = ("created_at", "revoked_at")
    actions = ["revoke"]

    @admin.action(description="Revoke selected IP credentials")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} IP credential(s) revoked.", messages.SUCCESS)


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
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
        text = bytes(obj.raw).decode("utf-8", "replace")
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)


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


@admin.register(OutboundMessage)
class OutboundMessageAdmin(admin.ModelAdmin):
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
    list_filter = ("status", "server", StreamFilter, "stream__message_stream_type")
    list_select_related = ("server", "stream")
    search_fields = ("=tag",)
    search_help_text = "A MessageID, or an exact tag."
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
        "to",
        "cc",
        "bcc",
        "recipients",
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
        term = search_term.strip()
        try:
            return queryset.filter(message_id=uuid.UUID(term)), False
        except ValueError:
            pass
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

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

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from servers.dashboard import message_timeline

        extra_context = extra_context or {}
        message = self.get_object(request, object_id)
        if message is not None:
            extra_context["timeline"] = message_timeline(message)
            extra_context["source_url"] = reverse(
                "admin:streams_outboundmessage_source", args=[message.pk]
            )
        return super().change_view(request, object_id, form_url, extra_context)
