import uuid

from django.contrib import admin, messages
from django.utils.html import format_html

from .models import Bounce
from .services import CannotActivate, activate_bounce


@admin.register(Bounce)
class BounceAdmin(admin.ModelAdmin):
    """Read-only bounce records; the one write is reactivation, by the API's own rule."""

    list_display = (
        "bounced_at",
        "type",
        "email",
        "server",
        "message_stream",
        "tag",
        "inactive",
        "can_activate",
    )
    list_filter = ("type", "inactive", "server", "message_stream")
    search_fields = ("email", "tag")
    date_hierarchy = "bounced_at"
    list_select_related = ("server",)
    actions = ["reactivate"]
    fields = (
        "id",
        "server",
        "message_stream",
        "type",
        "type_code",
        "email",
        "from_address",
        "subject",
        "tag",
        "message_id",
        "metadata",
        "details",
        "bounced_at",
        "inactive",
        "can_activate",
        "dump",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            message_id = uuid.UUID(search_term.strip())
        except ValueError:
            return found, may_have_duplicates
        return found | queryset.filter(message_id=message_id), may_have_duplicates

    @admin.display(description="TypeCode")
    def type_code(self, obj):
        return obj.type_code

    @admin.display(description="Dump")
    def dump(self, obj):
        if not obj.content:
            return "(no dump)"
        return format_html(
            '<pre style="white-space: pre-wrap; overflow-wrap: anywhere; max-height: 40em; '
            'overflow: auto;">{}</pre>',
            obj.content,
        )

    @admin.action(description="Reactivate the addresses of the selected bounces")
    def reactivate(self, request, queryset):
        done = 0
        for bounce in queryset:
            try:
                activate_bounce(bounce)
            except CannotActivate as exc:
                self.message_user(request, f"{bounce.email}: {exc.message}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"Reactivated {done} bounce(s).", messages.SUCCESS)
