import csv

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.core.validators import URLValidator, validate_email
from django.db.models import Count
from django.http import Http404, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST, require_safe

from servers.access import masked, may_change_server, scope_queryset, shown_secret
from servers.models import Server, ServerToken
from servers.scoping import ScopedModelAdmin, change_url
from servers.services import set_smtp_access
from streams import listeners, suppressions
from streams.models import IpCredential, MessageStream, SmtpToken, StreamType, Suppression
from streams.services import PERMANENT_STREAMS, check_smtp_token_allowed, provision_server


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


def _suppression_filters(request):
    reason = request.GET.get("reason", "")
    return {
        "email": request.GET.get("q", "").strip() or None,
        "reason": reason if reason in Suppression.Reason.values else None,
    }


class _Echo:
    def write(self, value):
        return value


def _csv_cell(value: str) -> str:
    # Keep spreadsheets from reading a cell as a formula.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


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
class MessageStreamAdmin(ScopedModelAdmin):
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
            webhooks = reverse("admin:webhooks_webhook_changelist")
        except NoReverseMatch:
            webhooks = "/admin/webhooks/webhook/"
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

    def admin_urls(self):
        return [
            ("<int:object_id>/tokens/<int:token_id>/revoke/", self.stream_token_revoke,
             "streams_messagestream_token_revoke"),
            ("<int:object_id>/suppressions/", self.stream_suppressions,
             "streams_messagestream_suppressions"),
            ("<int:object_id>/suppressions/add/", self.stream_suppression_add,
             "streams_messagestream_suppression_add"),
            ("<int:object_id>/suppressions/remove/", self.stream_suppression_remove,
             "streams_messagestream_suppression_remove"),
            ("<int:object_id>/suppressions.csv", self.stream_suppressions_csv,
             "streams_messagestream_suppressions_csv"),
        ]  # fmt: skip

    # --- Extra views: SMTP tokens and suppressions (thin: the rules are in streams.suppressions)

    @method_decorator(require_POST)
    def stream_token_revoke(self, request, object_id, token_id):
        stream = self.scoped_object(request, object_id, change=True)
        token = stream.smtp_tokens.filter(pk=token_id).first()
        if token is None:
            raise Http404("No such SMTP token on this stream.")
        token.revoke()
        messages.success(request, f"SMTP token {token.access_key} revoked.")
        return HttpResponseRedirect(change_url(stream) + "#smtp-tokens")

    @method_decorator(require_safe)
    def stream_suppressions(self, request, object_id):
        stream = self.scoped_object(request, object_id)
        filters = _suppression_filters(request)
        found = suppressions.search(stream, **filters).select_related("bounce")
        page = Paginator(found, 100).get_page(request.GET.get("p"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Suppressions of {stream.stream_id}",
            "subtitle": stream.server.name,
            "opts": MessageStream._meta,
            "original": stream,
            "stream": stream,
            "page": page,
            "q": request.GET.get("q", ""),
            "reason": filters["reason"] or "",
            "reasons": Suppression.Reason.choices,
            "can_change": self.has_change_permission(request, stream),
        }
        return TemplateResponse(request, "admin/streams/messagestream/suppressions.html", context)

    def _back_to_suppressions(self, request, stream):
        target = request.POST.get("next", "")
        if target == "stream":
            return HttpResponseRedirect(change_url(stream) + "#suppressions")
        return HttpResponseRedirect(
            reverse("admin:streams_messagestream_suppressions", args=[stream.pk])
        )

    @method_decorator(require_POST)
    def stream_suppression_add(self, request, object_id):
        stream = self.scoped_object(request, object_id, change=True)
        email = suppressions.normalise(request.POST.get("email", ""))
        try:
            validate_email(email)
        except ValidationError:
            messages.error(request, f"“{email}” is not an email address.")
            return self._back_to_suppressions(request, stream)
        _, created = suppressions.suppress(
            stream, email, Suppression.Reason.MANUAL, Suppression.Origin.ADMIN
        )
        if created:
            messages.success(request, f"{email} is now inactive on {stream.stream_id}.")
        else:
            messages.warning(request, f"{email} was already inactive on {stream.stream_id}.")
        return self._back_to_suppressions(request, stream)

    @method_decorator(require_POST)
    def stream_suppression_remove(self, request, object_id):
        stream = self.scoped_object(request, object_id, change=True)
        email = suppressions.normalise(request.POST.get("email", ""))
        if suppressions.is_spam_complaint(stream, email):
            messages.error(
                request, f"{email} complained about spam: spam complaints cannot be reactivated."
            )
        elif suppressions.reactivate(stream, email, origin=Suppression.Origin.ADMIN):
            messages.success(request, f"{email} is active again on {stream.stream_id}.")
        else:
            messages.warning(request, f"{email} was not suppressed on {stream.stream_id}.")
        return self._back_to_suppressions(request, stream)

    @method_decorator(require_safe)
    def stream_suppressions_csv(self, request, object_id):
        stream = self.scoped_object(request, object_id)
        found = suppressions.search(stream, **_suppression_filters(request))
        writer = csv.writer(_Echo())

        def rows():
            yield writer.writerow(["EmailAddress", "SuppressionReason", "Origin", "CreatedAt"])
            for email, reason, origin, created in found.values_list(
                "email", "reason", "origin", "created_at"
            ).iterator(chunk_size=2000):
                yield writer.writerow([_csv_cell(email), reason, origin, created.isoformat()])

        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        name = f"suppressions-{stream.server_id}-{stream.stream_id}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @admin.action(description="Archive selected streams", permissions=["change"])
    def archive(self, request, queryset):
        count = (
            queryset.filter(archived_at__isnull=True)
            .exclude(stream_id__in=PERMANENT_STREAMS)
            .update(archived_at=timezone.now())
        )
        self.message_user(request, f"{count} stream(s) archived (default streams cannot be).")

    @admin.action(description="Unarchive selected streams", permissions=["change"])
    def unarchive(self, request, queryset):
        count = queryset.update(archived_at=None)
        self.message_user(request, f"{count} stream(s) unarchived.")


@admin.register(SmtpToken)
class SmtpTokenAdmin(ScopedModelAdmin):
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

    def has_revoke_permission(self, request):
        # has_change_permission is False (tokens are immutable): revoking needs the change right.
        return request.user.has_perm("streams.change_smtptoken")

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

    @admin.action(description="Revoke selected SMTP tokens", permissions=["revoke"])
    def revoke(self, request, queryset):
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token.revoke()
            count += 1
        self.message_user(request, f"{count} SMTP token(s) revoked.", messages.SUCCESS)


@admin.register(IpCredential)
class IpCredentialAdmin(ScopedModelAdmin):
    list_display = ("cidr", "stream", "description", "created_at", "revoked_at")
    list_filter = ("stream__server",)
    list_select_related = ("stream__server",)
    search_fields = ("cidr", "description")
    fields = ("stream", "cidr", "description", "created_at", "revoked_at")
    readonly_fields = ("created_at", "revoked_at")
    actions = ["revoke"]

    @admin.action(description="Revoke selected IP credentials", permissions=["change"])
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} IP credential(s) revoked.", messages.SUCCESS)


# --- Servers: a server page is its streams and SMTP settings ----------------------------------


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
class ServerAdmin(ScopedModelAdmin):
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
    readonly_fields = ("api_tokens_display", "api_tokens_masked", "created_at")
    fieldsets = (
        (None, {"fields": ("name", "delivery_type", "color")}),
        ("SMTP", {"fields": ("smtp_api_activated", "strict_smtp", "enable_smtp_api_error_hooks")}),
        ("Sending limits", {"fields": ("smtp_messages_per_minute", "smtp_messages_per_day")}),
        ("Tracking defaults", {"fields": ("track_opens", "track_links")}),
        (
            "Inbound",
            {
                "fields": (
                    "inbound_hook_url",
                    "inbound_domain",
                    "inbound_spam_threshold",
                    "raw_email_enabled",
                )
            },
        ),
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

    def get_fieldsets(self, request, obj=None):
        """The API tokens in full only for users who may change the server (else masked)."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or may_change_server(request.user, obj):
            return fieldsets
        return [
            (name, {**options, "fields": tuple(
                "api_tokens_masked" if f == "api_tokens_display" else f for f in options["fields"]
            )})
            for name, options in fieldsets
        ]  # fmt: skip

    @admin.display(description="server API tokens")
    def api_tokens_display(self, obj):
        if obj.pk is None:
            return "Generated when the server is saved."
        return format_html_join(
            mark_safe("<br>"), "<code>{}</code>", ((t.token,) for t in obj.tokens.all())
        )

    @admin.display(description="server API tokens")
    def api_tokens_masked(self, obj):
        tokens = format_html_join(
            mark_safe("<br>"), "<code>{}</code>", ((masked(t.token),) for t in obj.tokens.all())
        )
        return format_html(
            '{}<br><span class="pm-hint">Shown in full to those who may change this server.</span>',
            tokens,
        )

    # Fields that came with the Server API: a form posted without them keeps their defaults.
    optional_with_default = ("color", "inbound_spam_threshold")

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        for name in self.optional_with_default:
            if name in form.base_fields:
                form.base_fields[name].required = False
        if "inbound_hook_url" in form.base_fields:
            # A web address; where it may point is checked when it is posted to (the SSRF guard).
            form.base_fields["inbound_hook_url"].validators.append(
                URLValidator(schemes=["http", "https"])
            )
        return form

    def save_model(self, request, obj, form, change):
        for name in self.optional_with_default:
            if getattr(obj, name) in (None, ""):
                setattr(obj, name, Server._meta.get_field(name).get_default())
        super().save_model(request, obj, form, change)
        if not change:
            provision_server(obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        server = self.get_object(request, object_id)
        if server is not None:
            streams = list(server.streams.order_by("id"))
            tokens_in_full = may_change_server(request.user, server)
            extra_context.update(
                smtp_switch_url=reverse("admin:servers_server_smtp", args=[server.pk]),
                can_switch_smtp=self.has_change_permission(request, server),
                smtp_endpoints=listeners.smtp_endpoints(request.get_host().rsplit(":", 1)[0]),
                smtp_auth_methods=listeners.AUTH_METHODS,
                smtp_limits=listeners.smtp_limits(),
                smtp_streams=[s for s in streams if s.message_stream_type != "Inbound"],
                server_tokens=[shown_secret(t, tokens_in_full) for t in server.api_tokens],
                server_tokens_masked=not tokens_in_full,
                dashboard_url=reverse("admin:dashboard") + f"?server={server.pk}",
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def admin_urls(self):
        return [("<int:object_id>/smtp/", self.server_smtp_switch, "servers_server_smtp")]

    @method_decorator(require_POST)
    def server_smtp_switch(self, request, object_id):
        server = self.scoped_object(request, object_id, change=True)
        enabled = request.POST.get("enabled") == "on"
        set_smtp_access(server, enabled)
        self.log_change(request, server, [{"changed": {"fields": ["SMTP access"]}}])
        messages.success(
            request, f"SMTP access switched {'on' if enabled else 'off'} for “{server.name}”."
        )
        return HttpResponseRedirect(change_url(server))

    @admin.action(description="Switch SMTP access on", permissions=["change"])
    def enable_smtp(self, request, queryset):
        count = sum(1 for server in queryset if set_smtp_access(server, True))
        self.message_user(request, f"SMTP access switched on for {count} server(s).")

    @admin.action(description="Switch SMTP access off", permissions=["change"])
    def disable_smtp(self, request, queryset):
        count = sum(1 for server in queryset if set_smtp_access(server, False))
        self.message_user(request, f"SMTP access switched off for {count} server(s).")

    def has_add_token_permission(self, request):
        return request.user.has_perm("servers.add_servertoken")

    @admin.action(description="Generate another server API token", permissions=["add_token"])
    def generate_api_token(self, request, queryset):
        for server in queryset:
            ServerToken.issue(server)
        self.message_user(request, "New API token(s) generated.", messages.SUCCESS)
