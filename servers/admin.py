from django.contrib import admin, messages
from django.db.models import Count
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from streams.models import MessageStream

from . import crypto
from .models import AccountToken, Server, ServerToken
from .services import provision_server


class StreamInline(admin.TabularInline):
    model = MessageStream
    fields = ("stream_link", "name", "message_stream_type", "archived_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="ID")
    def stream_link(self, obj):
        return obj.stream_id


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "delivery_type",
        "smtp_api_activated",
        "stream_count",
        "created_at",
    )
    list_display_links = ("id", "name")
    list_editable = ("smtp_api_activated",)
    list_filter = ("smtp_api_activated", "delivery_type")
    search_fields = ("name",)
    readonly_fields = ("api_tokens_display", "created_at")
    fieldsets = (
        (None, {"fields": ("name", "delivery_type")}),
        ("SMTP", {"fields": ("smtp_api_activated", "strict_smtp", "enable_smtp_api_error_hooks")}),
        ("Tracking defaults", {"fields": ("track_opens", "track_links")}),
        ("API tokens", {"fields": ("api_tokens_display", "created_at")}),
    )
    inlines = [StreamInline]
    actions = ["enable_smtp", "disable_smtp", "generate_api_token"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_stream_count=Count("streams"))

    @admin.display(description="streams", ordering="_stream_count")
    def stream_count(self, obj):
        return obj._stream_count

    @admin.display(description="server API tokens")
    def api_tokens_display(self, obj):
        if obj.pk is None:
            return "Generated when the server is saved."
        return format_html_join(
            mark_safe("<br>"), "<code>{}</code>", ((t.token,) for t in obj.tokens.all())
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            provision_server(obj)

    @admin.action(description="Switch SMTP access on")
    def enable_smtp(self, request, queryset):
        count = queryset.update(smtp_api_activated=True)
        self.message_user(request, f"SMTP access switched on for {count} server(s).")

    @admin.action(description="Switch SMTP access off")
    def disable_smtp(self, request, queryset):
        count = queryset.update(smtp_api_activated=False)
        self.message_user(request, f"SMTP access switched off for {count} server(s).")

    @admin.action(description="Generate another server API token")
    def generate_api_token(self, request, queryset):
        for server in queryset:
            ServerToken.issue(server)
        self.message_user(request, "New API token(s) generated.", messages.SUCCESS)


@admin.register(ServerToken)
class ServerTokenAdmin(admin.ModelAdmin):
    list_display = ("__str__", "server", "created_at")
    list_filter = ("server",)
    fields = ("server", "token_display", "created_at")
    readonly_fields = ("token_display", "created_at")

    @admin.display(description="token")
    def token_display(self, obj):
        return format_html("<code>{}</code>", obj.token) if obj.pk else "Generated on save."

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.set_token(crypto.new_api_token())
        super().save_model(request, obj, form, change)


@admin.register(AccountToken)
class AccountTokenAdmin(ServerTokenAdmin):
    list_display = ("__str__", "name", "created_at")
    list_filter = ()
    fields = ("name", "token_display", "created_at")
