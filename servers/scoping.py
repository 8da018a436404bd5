"""What every model admin builds on: scoping by staff server access, cheap counts on big tables,
and the small helpers of the admin's extra views.

``ServerScopedAdmin`` limits every list, count, filter, search, form choice and object look-up
to the servers the user may see (``servers.access``). Models that belong to no server (account
tokens, users, the access records themselves) are hidden from limited users. Every model admin
of the project's site subclasses it in its own source; the site (postmark_site.admin) refuses one
that does not, so none can be forgotten.
"""

from django.contrib import admin
from django.contrib.admin.filters import RelatedFieldListFilter
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils.functional import cached_property

from servers.access import scope_queryset, server_lookup, visible_server_ids


class ScopedRelatedFieldListFilter(RelatedFieldListFilter):
    """A related-object filter that offers only the servers (streams …) the user may see."""

    def field_choices(self, field, request, model_admin):
        ordering = self.field_admin_ordering(field, request, model_admin)
        ids = visible_server_ids(request.user)
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


class ServerScopedAdmin:
    """A ModelAdmin mixin: the user sees only the servers StaffServerAccess grants.

    Also gives each admin ``admin_urls`` (extra views mounted ahead of the model's own, wrapped in
    ``admin_site.admin_view``) and ``scoped_object`` for those views."""

    def _server_less(self) -> bool:
        return server_lookup(self.model) is None

    def _hidden_from(self, request) -> bool:
        return self._server_less() and visible_server_ids(request.user) is not None

    def get_queryset(self, request):
        return scope_queryset(super().get_queryset(request), request.user)

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        if visible_server_ids(request.user) is None:
            return filters
        return [_scoped_list_filter(self.model, entry) for entry in filters]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if formfield is not None and isinstance(getattr(formfield, "queryset", None), QuerySet):
            formfield.queryset = scope_queryset(formfield.queryset, request.user)
        return formfield

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)
        if formfield is not None and isinstance(getattr(formfield, "queryset", None), QuerySet):
            formfield.queryset = scope_queryset(formfield.queryset, request.user)
        return formfield

    def has_view_permission(self, request, obj=None):
        return not self._hidden_from(request) and super().has_view_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not self._hidden_from(request) and super().has_change_permission(request, obj)

    def has_add_permission(self, request, *args, **kwargs):
        return not self._hidden_from(request) and super().has_add_permission(
            request, *args, **kwargs
        )

    def has_delete_permission(self, request, obj=None):
        return not self._hidden_from(request) and super().has_delete_permission(request, obj)

    def has_module_permission(self, request):
        return not self._hidden_from(request) and super().has_module_permission(request)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """Adds what the admin site knows of the object that its own app cannot (see
        ``PostmarkAdminSite.change_page_context``)."""
        provider = getattr(self.admin_site, "change_page_context", {}).get(self.model)
        if provider is not None:
            obj = self.get_object(request, object_id)
            if obj is not None:
                extra_context = {**(extra_context or {}), **provider(request, obj)}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- Extra views ------------------------------------------------------------------------

    def admin_urls(self) -> list:
        """``(route, view, name)`` of this admin's extra views; the route is relative to the
        model's admin URL (e.g. ``<int:object_id>/smtp/``), the name is the full URL name."""
        return []

    def get_urls(self):
        extra = [
            path(route, self.admin_site.admin_view(view), name=name)
            for route, view, name in self.admin_urls()
        ]
        return extra + super().get_urls()

    def scoped_object(self, request, object_id, *, change=False):
        """The object, if the user may see it (else 404) and, with ``change``, change it (else
        403): the look-up of every extra view."""
        obj = self.get_queryset(request).filter(pk=object_id).first()
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404(f"No {self.model._meta.verbose_name} with ID {object_id}.")
        if change and not self.has_change_permission(request, obj):
            raise PermissionDenied
        return obj


class ScopedModelAdmin(ServerScopedAdmin, admin.ModelAdmin):
    """The base class of the project's model admins."""


def change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def source_response(request, data: bytes, filename: str) -> HttpResponse:
    """A raw message as a download (or, with ``?inline=1``, as text), never rendered as HTML."""
    if request.GET.get("inline"):
        response = HttpResponse(data, content_type="text/plain; charset=utf-8")
    else:
        response = HttpResponse(data, content_type="message/rfc822")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


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
