from collections import deque

from django.contrib import admin, messages
from django.contrib.admin.filters import RelatedFieldListFilter
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import FieldDoesNotExist
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Count, QuerySet
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from streams.models import MessageStream

from . import crypto, dashboard
from .models import AccountToken, Server, ServerToken, StaffServerAccess
from .services import provision_server

admin.site.site_header = "Postmark-compatible mail"
admin.site.site_title = "Mail admin"
admin.site.index_title = "Servers, streams, messages and bounces"


# --- Server scoping: a limited staff user sees nothing of the other servers, anywhere ---------


def server_lookup(model) -> str | None:
    """The ORM path from ``model`` to its Server (e.g. ``stream__server``), or None when a model
    belongs to no server. Follows forward foreign keys, shortest path first."""
    if model is Server:
        return "id"
    queue = deque([(model, "", 0)])
    while queue:
        current, path, depth = queue.popleft()
        for f in current._meta.get_fields():
            if not (f.concrete and f.is_relation and (f.many_to_one or f.one_to_one)):
                continue
            if f.related_model is None:
                continue
            lookup = f"{path}{f.name}"
            if f.related_model is Server:
                return lookup
            if depth < 2:
                queue.append((f.related_model, f"{lookup}__", depth + 1))
    return None


def scope_queryset(queryset, user):
    """``queryset`` limited to what ``user`` may see (StaffServerAccess)."""
    ids = dashboard.visible_server_ids(user)
    if ids is None:
        return queryset
    lookup = server_lookup(queryset.model)
    if lookup is None:
        return queryset.none()
    return queryset.filter(**{f"{lookup}__in": ids})


class ScopedRelatedFieldListFilter(RelatedFieldListFilter):
    """A related-object filter that offers only the servers (streams …) the user may see."""

    def field_choices(self, field, request, model_admin):
        ordering = self.field_admin_ordering(field, request, model_admin)
        ids = dashboard.visible_server_ids(request.user)
        limit = {}
        if ids is not None:
            lookup = server_lookup(field.related_model)
            limit = {f"{lookup}__in": ids} if lookup else {"pk__in": []}
        return field.get_choices(include_blank=False, limit_choices_to=limit, ordering=ordering)


def _scoped_list_filter(model, entry):
    name = entry[0] if isinstance(entry, tuple | list) else entry
    if not isinstance(name, str):
        return entry  # a SimpleListFilter class: it builds its own choices
    try:
        field = get_fields_from_path(model, name)[-1]
    except (FieldDoesNotExist, Exception):  # noqa: BLE001 - leave unknown entries alone
        return entry
    if field.is_relation and field.related_model is not None:
        if isinstance(entry, tuple | list) and not issubclass(entry[1], RelatedFieldListFilter):
            return entry
        return (name, ScopedRelatedFieldListFilter)
    return entry


# Extra context for change pages of admins defined elsewhere (templates under
# templates/admin/<app>/<model>/ show it): model -> function(request, obj) -> dict.
EXTRA_CHANGE_CONTEXT = {}

PERMISSION_HOOKS = (
    "has_view_permission",
    "has_change_permission",
    "has_add_permission",
    "has_delete_permission",
    "has_module_permission",
)


def scope_model_admin(model_admin) -> None:
    """Wrap one registered ModelAdmin so that every list, count, filter, search, form choice and
    object look-up is limited to the servers the user may see. Models that belong to no server
    (account tokens, users, the access records themselves) are hidden from limited users."""
    if getattr(model_admin, "_server_scoped", False):
        return
    model_admin._server_scoped = True
    model = model_admin.model
    lookup = server_lookup(model)
    original_queryset = model_admin.get_queryset
    original_list_filter = model_admin.get_list_filter
    original_fk = model_admin.formfield_for_foreignkey
    original_m2m = model_admin.formfield_for_manytomany

    def get_queryset(request):
        return scope_queryset(original_queryset(request), request.user)

    def get_list_filter(request):
        filters = original_list_filter(request)
        if dashboard.visible_server_ids(request.user) is None:
            return filters
        return [_scoped_list_filter(model, entry) for entry in filters]

    def formfield_for_foreignkey(db_field, request, **kwargs):
        formfield = original_fk(db_field, request, **kwargs)
        if formfield is not None and isinstance(getattr(formfield, "queryset", None), QuerySet):
            formfield.queryset = scope_queryset(formfield.queryset, request.user)
        return formfield

    def formfield_for_manytomany(db_field, request, **kwargs):
        formfield = original_m2m(db_field, request, **kwargs)
        if formfield is not None and isinstance(getattr(formfield, "queryset", None), QuerySet):
            formfield.queryset = scope_queryset(formfield.queryset, request.user)
        return formfield

    extra = EXTRA_CHANGE_CONTEXT.get(model)
    if extra is not None:
        original_change_view = model_admin.change_view

        def change_view(request, object_id, form_url="", extra_context=None):
            extra_context = dict(extra_context or {})
            obj = model_admin.get_object(request, object_id)
            if obj is not None:
                extra_context.update(extra(request, obj))
            return original_change_view(request, object_id, form_url, extra_context)

        model_admin.change_view = change_view

    model_admin.get_queryset = get_queryset
    model_admin.get_list_filter = get_list_filter
    model_admin.formfield_for_foreignkey = formfield_for_foreignkey
    model_admin.formfield_for_manytomany = formfield_for_manytomany

    if lookup is None:
        for name in PERMISSION_HOOKS:
            original = getattr(model_admin, name)

            def hook(request, *args, _original=original, **kwargs):
                if dashboard.visible_server_ids(request.user) is not None:
                    return False
                return _original(request, *args, **kwargs)

            setattr(model_admin, name, hook)


def scoped_admin(model):
    """The registered (and scoped) ModelAdmin of ``model``."""
    model_admin = admin.site._registry[model]
    scope_model_admin(model_admin)
    return model_admin


_original_get_urls = admin.site.get_urls


def _get_urls():
    # Called once, when the URLconf loads: by then every app's admin module has registered.
    from bounces.models import Bounce

    from .views import bounce_change_context

    EXTRA_CHANGE_CONTEXT.setdefault(Bounce, bounce_change_context)
    for model_admin in list(admin.site._registry.values()):
        scope_model_admin(model_admin)
    from .urls import admin_urlpatterns

    return admin_urlpatterns(admin.site) + _original_get_urls()


admin.site.get_urls = _get_urls


class EstimatedCountPaginator(Paginator):
    """Counts that stay cheap on tables of millions of rows (PostgreSQL): an unfiltered list uses
    the planner's estimate (pg_class.reltuples); a filtered one counts at most ``COUNT_CAP`` + 1
    rows, so a filter matching a million rows shows ``COUNT_CAP`` and its pages (narrow the
    filter to see further). SQLite and small tables get exact counts."""

    ESTIMATE_ABOVE = 50_000
    COUNT_CAP = 10_000

    @cached_property
    def count(self):
        qs = self.object_list
        if isinstance(qs, QuerySet) and connections[qs.db].vendor == "postgresql":
            if not qs.query.where:
                with connections[qs.db].cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                        [qs.model._meta.db_table],
                    )
                    row = cursor.fetchone()
                if row and row[0] and row[0] > self.ESTIMATE_ABOVE:
                    return int(row[0])
            return min(qs.order_by()[: self.COUNT_CAP + 1].count(), self.COUNT_CAP)
        return super().count


# --- Admin classes -------------------------------------------------------------------------------


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
    show_full_result_count = False

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

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        server = self.get_object(request, object_id)
        if server is not None:
            streams = list(server.streams.order_by("id"))
            extra_context.update(
                smtp_switch_url=reverse("admin:servers_server_smtp", args=[server.pk]),
                can_switch_smtp=self.has_change_permission(request, server),
                smtp_endpoints=dashboard.smtp_endpoints(request.get_host().rsplit(":", 1)[0]),
                smtp_auth_methods=dashboard.AUTH_METHODS,
                smtp_limits=dashboard.smtp_limits(),
                smtp_streams=[s for s in streams if s.message_stream_type != "Inbound"],
                server_tokens=server.api_tokens,
                dashboard_url=reverse("admin:dashboard") + f"?server={server.pk}",
            )
        return super().change_view(request, object_id, form_url, extra_context)

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
    list_select_related = ("server",)
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
    list_select_related = ()
    fields = ("name", "token_display", "created_at")


@admin.register(StaffServerAccess)
class StaffServerAccessAdmin(admin.ModelAdmin):
    """Which servers a staff user is limited to. Only superusers manage these."""

    list_display = ("user", "server_list", "created_at")
    filter_horizontal = ("servers",)
    fields = ("user", "servers")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user").prefetch_related("servers")

    @admin.display(description="servers")
    def server_list(self, obj):
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
