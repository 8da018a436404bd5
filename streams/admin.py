from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from .models import IpCredential, MessageStream, SmtpToken, StreamType, Submission
from .services import check_smtp_token_allowed


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
        return super().change_view(request, object_id, form_url, extra_context)

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
    list_select_related = ("server", "stream")
    search_fields = ("=message_id", "mail_from")
    date_hierarchy = "received_at"
    show_full_result_count = False
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
