from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST, require_safe

from bounces import queries
from bounces.models import Bounce
from bounces.services import CannotActivate, activate_bounce
from bounces.types import SMTP_API_ERROR, SPAM_COMPLAINT
from servers.scoping import ScopedModelAdmin, change_url, source_response

RECENT_PERIODS = {"1d": ("Past 24 hours", 1), "7d": ("Past 7 days", 7), "30d": ("Past 30 days", 30)}


class BouncedFilter(admin.SimpleListFilter):
    """Bounces within a recent period (the bounce API's ``fromdate``)."""

    title = "bounced"
    parameter_name = "bounced"

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in RECENT_PERIODS.items()]

    def queryset(self, request, queryset):
        if self.value() in RECENT_PERIODS:
            days = RECENT_PERIODS[self.value()][1]
            return queries.filter_bounces(queryset, since=timezone.now() - timedelta(days=days))
        return queryset


@admin.register(Bounce)
class BounceAdmin(ScopedModelAdmin):
    """Read-only bounce records; the one write is reactivation, by the API's own rule."""

    list_display = (
        "bounced_at",
        "type",
        "email",
        "reason",
        "server",
        "message_stream",
        "tag",
        "inactive",
        "can_activate",
    )
    list_filter = ("type", "inactive", BouncedFilter, "server", "message_stream")
    search_fields = ("email", "tag")  # shows the search box; get_search_results searches
    search_help_text = (
        "A MessageID; a recipient's or sender's address; or part of the subject or recipient, "
        "or a whole tag."
    )
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

    def get_search_results(self, request, queryset, search_term):
        # The bounce API's own query functions, so that both find the same bounces.
        return queries.search_bounces(queryset, search_term), False

    def has_reactivate_permission(self, request):
        # has_change_permission is False (bounces are records): reactivating needs the change right.
        return request.user.has_perm("bounces.change_bounce")

    def admin_urls(self):
        return [
            ("<int:object_id>/dump.eml", self.bounce_dump, "bounces_bounce_dump"),
            ("<int:object_id>/reactivate/", self.bounce_reactivate, "bounces_bounce_reactivate"),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        bounce = self.get_object(request, object_id)
        if bounce is not None:
            extra_context = {**(extra_context or {}), **self.change_context(request, bounce)}
        return super().change_view(request, object_id, form_url, extra_context)

    def change_context(self, request, bounce) -> dict:
        """What the bounce page shows besides its fields (templates/admin/bounces/bounce/)."""
        reason = ""
        if bounce.type == SPAM_COMPLAINT:
            reason = "Spam complaints cannot be reactivated."
        elif not bounce.can_activate:
            reason = f"Bounces of type {bounce.type} cannot be reactivated."
        elif not bounce.inactive:
            reason = "The address is already active."
        elif not self.has_reactivate_permission(request):
            reason = "You may not change bounces."
        return {
            "smtp_api_error": smtp_api_error(bounce.dump_text)
            if bounce.type == SMTP_API_ERROR
            else None,
            "dump_url": reverse("admin:bounces_bounce_dump", args=[bounce.pk]),
            "reactivate_url": reverse("admin:bounces_bounce_reactivate", args=[bounce.pk]),
            "can_reactivate": not reason,
            "cannot_reactivate_reason": reason,
        }

    @method_decorator(require_safe)
    def bounce_dump(self, request, object_id):
        bounce = self.scoped_object(request, object_id)
        if not bounce.dump_available:
            raise Http404("This bounce has no raw source.")
        return source_response(request, bounce.dump_text.encode("utf-8"), f"bounce-{bounce.pk}.eml")

    @method_decorator(require_POST)
    def bounce_reactivate(self, request, object_id):
        bounce = self.scoped_object(request, object_id)
        if not self.has_reactivate_permission(request):
            raise PermissionDenied
        try:
            activate_bounce(bounce)
        except CannotActivate as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{bounce.email} is active again on {bounce.message_stream}.")
        return HttpResponseRedirect(change_url(bounce))

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="reason")
    def reason(self, obj):
        """The receiving server's words (else the type's description), cut to one line; the
        whole text on hover."""
        text = " ".join((obj.details or obj.description).split())
        return format_html('<span class="pm-truncate" title="{}">{}</span>', text, text)

    @admin.display(description="TypeCode")
    def type_code(self, obj):
        return obj.type_code

    @admin.display(description="Dump")
    def dump(self, obj):
        if not obj.dump_available:
            return "(no dump)"
        return format_html(
            '<pre style="white-space: pre-wrap; overflow-wrap: anywhere; max-height: 40em; '
            'overflow: auto;">{}</pre>',
            obj.dump_text,
        )

    @admin.action(
        description="Reactivate the addresses of the selected bounces", permissions=["reactivate"]
    )
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


def smtp_api_error(content: str) -> dict:
    """The (first) long error message at the head of an SMTP API error dump (see
    ``messages.processing.dump_head``): {"code": ..., "message": ...}."""
    head = content.replace("\r\n", "\n").split("\n\n", 1)[0]
    found = {}
    for line in head.split("\n"):
        key, _, value = line.partition(": ")
        if key == "ErrorCode":
            found.setdefault("code", value.strip())
        elif key == "Message":
            found.setdefault("message", value.strip())
    return found
