"""Admin of servers' credentials and staff access, and Django's users and groups scoped like every
other model admin. The Server admin itself lives in ``streams.admin``: a server page is mostly its
streams and their SMTP settings."""

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User
from django.utils.html import format_html

from core import crypto
from servers.access import masked, may_change_server
from servers.models import AccountToken, ServerToken, StaffServerAccess
from servers.scoping import ScopedModelAdmin, ServerScopedAdmin

# django.contrib.auth registered its own (unscoped) admins when its module was imported (above).
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class ScopedUserAdmin(ServerScopedAdmin, auth_admin.UserAdmin):
    """Django's user admin. Users belong to no server: staff limited to some servers see none."""


@admin.register(Group)
class ScopedGroupAdmin(ServerScopedAdmin, auth_admin.GroupAdmin):
    """Django's group admin. Groups belong to no server: staff limited to some servers see none."""


@admin.register(ServerToken)
class ServerTokenAdmin(ScopedModelAdmin):
    """Server API tokens. The whole token shows only to users who may change its server; others
    see its ends (``servers.access.masked``)."""

    list_display = ("__str__", "server", "created_at")
    list_filter = ("server",)
    list_select_related = ("server",)
    readonly_fields = ("token_display", "token_masked", "created_at")

    def get_fields(self, request, obj=None):
        shown = (
            "token_display" if obj is None or self.may_see_token(request, obj) else "token_masked"
        )
        return ("server", shown, "created_at")

    def may_see_token(self, request, obj) -> bool:
        return may_change_server(request.user, obj.server)

    @admin.display(description="token")
    def token_display(self, obj):
        return format_html("<code>{}</code>", obj.token) if obj.pk else "Generated on save."

    @admin.display(description="token")
    def token_masked(self, obj):
        return format_html(
            '<code>{}</code> <span class="pm-hint">(shown in full to those who may change '
            "it)</span>",
            masked(obj.token),
        )

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.set_token(crypto.new_api_token())
        super().save_model(request, obj, form, change)


@admin.register(AccountToken)
class AccountTokenAdmin(ServerTokenAdmin):
    """Account API tokens: the whole token shows only to users who may change account tokens."""

    list_display = ("__str__", "name", "created_at")
    list_filter = ()
    list_select_related = ()

    def get_fields(self, request, obj=None):
        shown = (
            "token_display" if obj is None or self.may_see_token(request, obj) else "token_masked"
        )
        return ("name", shown, "created_at")

    def may_see_token(self, request, obj) -> bool:
        return request.user.has_perm("servers.change_accounttoken")


@admin.register(StaffServerAccess)
class StaffServerAccessAdmin(ScopedModelAdmin):
    """Which servers a staff user may see: some, or all (a staff user without a record sees none).
    Only superusers manage these."""

    list_display = ("user", "server_list", "created_at")
    filter_horizontal = ("servers",)
    fields = ("user", "all_servers", "servers")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user").prefetch_related("servers")

    @admin.display(description="servers")
    def server_list(self, obj):
        if obj.all_servers:
            return "(all servers)"
        return ", ".join(s.name for s in obj.servers.all()) or "(none)"

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
