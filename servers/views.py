"""The dashboard and the small admin views around the model admins: the SMTP switch, SMTP token
revocation, suppressions (list, add, remove, CSV), bounce dumps and reactivation, message sources.

Thin edges: every object is looked up through its (server-scoped) ModelAdmin's queryset, so a
staff user limited to some servers gets a 404 for anything else; the rules live in services.
All are mounted through ``site.admin_view`` (staff only, CSRF on POST, never cached)."""

import contextlib
import csv

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.core.validators import validate_email
from django.http import Http404, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from bounces.models import Bounce
from bounces.services import CannotActivate, activate_bounce
from streams import suppressions
from streams.models import MessageStream, OutboundMessage, Suppression

from . import dashboard as stats
from .admin import scoped_admin
from .models import Server
from .services import set_smtp_access


def _object(request, model, object_id, *, change=False):
    """The object, if the user may see it (else 404) and, with ``change``, change it (else 403)."""
    model_admin = scoped_admin(model)
    obj = model_admin.get_queryset(request).filter(pk=object_id).first()
    if obj is None or not model_admin.has_view_permission(request, obj):
        raise Http404(f"No {model._meta.verbose_name} with ID {object_id}.")
    if change and not model_admin.has_change_permission(request, obj):
        raise PermissionDenied
    return obj


def _change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


# --- Dashboard -----------------------------------------------------------------------------------


@require_safe
def dashboard(request):
    visible = stats.visible_server_ids(request.user)
    window = request.GET.get("window", stats.DEFAULT_WINDOW)
    if window not in stats.WINDOWS:
        window = stats.DEFAULT_WINDOW
    selected = None
    with contextlib.suppress(ValueError):
        selected = int(request.GET.get("server", ""))
    if selected is not None and visible is not None and selected not in visible:
        raise Http404("No such server.")
    ids = [selected] if selected is not None else visible
    data = stats.collect(ids)
    label = stats.WINDOWS[window][0]
    overall = [stats.Bucket(b) for b in stats.window_buckets(window, data.now)]
    for server_stats in data.servers:
        for total, bucket in zip(overall, server_stats.series[window], strict=True):
            total.counts.add(bucket.counts)
        server_stats.chart = stats.chart_svg(
            server_stats.series[window], window, title=f"{server_stats.server.name}: {label}"
        )
    servers_for_menu = (
        data.servers and [s.server for s in data.servers]
        if selected is None
        else list(stats.visible_servers(request.user).only("id", "name"))
    )
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "data": data,
        "window": window,
        "window_label": label,
        "windows": [(key, value[0]) for key, value in stats.WINDOWS.items()],
        "selected_server": selected,
        "servers_for_menu": servers_for_menu or [],
        "overall_chart": stats.chart_svg(overall, window, title=f"All servers: {label}"),
        "window_keys": list(stats.WINDOWS),
    }
    return TemplateResponse(request, "admin/dashboard.html", context)


# --- Servers -------------------------------------------------------------------------------------


@require_POST
def server_smtp_switch(request, object_id):
    server = _object(request, Server, object_id, change=True)
    enabled = request.POST.get("enabled") == "on"
    set_smtp_access(server, enabled)
    scoped_admin(Server).log_change(request, server, [{"changed": {"fields": ["SMTP access"]}}])
    messages.success(
        request, f"SMTP access switched {'on' if enabled else 'off'} for “{server.name}”."
    )
    return HttpResponseRedirect(_change_url(server))


# --- Streams: SMTP tokens and suppressions ------------------------------------------------------


@require_POST
def stream_token_revoke(request, object_id, token_id):
    stream = _object(request, MessageStream, object_id, change=True)
    token = stream.smtp_tokens.filter(pk=token_id).first()
    if token is None:
        raise Http404("No such SMTP token on this stream.")
    token.revoke()
    messages.success(request, f"SMTP token {token.access_key} revoked.")
    return HttpResponseRedirect(_change_url(stream) + "#smtp-tokens")


def _suppression_filters(request):
    reason = request.GET.get("reason", "")
    return {
        "email": request.GET.get("q", "").strip() or None,
        "reason": reason if reason in Suppression.Reason.values else None,
    }


@require_safe
def stream_suppressions(request, object_id):
    stream = _object(request, MessageStream, object_id)
    filters = _suppression_filters(request)
    found = suppressions.search(stream, **filters).select_related("bounce")
    page = Paginator(found, 100).get_page(request.GET.get("p"))
    context = {
        **admin.site.each_context(request),
        "title": f"Suppressions of {stream.stream_id}",
        "subtitle": stream.server.name,
        "opts": MessageStream._meta,
        "original": stream,
        "stream": stream,
        "page": page,
        "q": request.GET.get("q", ""),
        "reason": filters["reason"] or "",
        "reasons": Suppression.Reason.choices,
        "can_change": scoped_admin(MessageStream).has_change_permission(request, stream),
    }
    return TemplateResponse(request, "admin/streams/messagestream/suppressions.html", context)


def _back_to_suppressions(request, stream):
    target = request.POST.get("next", "")
    if target == "stream":
        return HttpResponseRedirect(_change_url(stream) + "#suppressions")
    return HttpResponseRedirect(
        reverse("admin:streams_messagestream_suppressions", args=[stream.pk])
    )


@require_POST
def stream_suppression_add(request, object_id):
    stream = _object(request, MessageStream, object_id, change=True)
    email = suppressions.normalise(request.POST.get("email", ""))
    try:
        validate_email(email)
    except ValidationError:
        messages.error(request, f"“{email}” is not an email address.")
        return _back_to_suppressions(request, stream)
    _, created = suppressions.suppress(
        stream, email, Suppression.Reason.MANUAL, Suppression.Origin.ADMIN
    )
    if created:
        messages.success(request, f"{email} is now inactive on {stream.stream_id}.")
    else:
        messages.warning(request, f"{email} was already inactive on {stream.stream_id}.")
    return _back_to_suppressions(request, stream)


@require_POST
def stream_suppression_remove(request, object_id):
    stream = _object(request, MessageStream, object_id, change=True)
    email = suppressions.normalise(request.POST.get("email", ""))
    if suppressions.is_spam_complaint(stream, email):
        messages.error(
            request, f"{email} complained about spam: spam complaints cannot be reactivated."
        )
    elif suppressions.reactivate(stream, email, origin=Suppression.Origin.ADMIN):
        messages.success(request, f"{email} is active again on {stream.stream_id}.")
    else:
        messages.warning(request, f"{email} was not suppressed on {stream.stream_id}.")
    return _back_to_suppressions(request, stream)


class _Echo:
    def write(self, value):
        return value


def _csv_cell(value: str) -> str:
    # Keep spreadsheets from reading a cell as a formula.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@require_safe
def stream_suppressions_csv(request, object_id):
    stream = _object(request, MessageStream, object_id)
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


# --- Bounces and messages ------------------------------------------------------------------------


def _source_response(request, data: bytes, filename: str) -> HttpResponse:
    if request.GET.get("inline"):
        response = HttpResponse(data, content_type="text/plain; charset=utf-8")
    else:
        response = HttpResponse(data, content_type="message/rfc822")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@require_safe
def bounce_dump(request, object_id):
    bounce = _object(request, Bounce, object_id)
    if not bounce.content:
        raise Http404("This bounce has no raw source.")
    return _source_response(request, bounce.content.encode("utf-8"), f"bounce-{bounce.pk}.eml")


def smtp_api_error(content: str) -> dict:
    """The long error message at the head of an SMTP API error dump (see
    ``streams.processing.dump_text``): {"code": ..., "message": ...}."""
    head = content.replace("\r\n", "\n").split("\n\n", 1)[0]
    found = {}
    for line in head.split("\n"):
        key, _, value = line.partition(": ")
        if key == "ErrorCode":
            found["code"] = value.strip()
        elif key == "Message":
            found["message"] = value.strip()
    return found


def bounce_change_context(request, bounce) -> dict:
    """What the bounce page shows besides its fields (templates/admin/bounces/bounce/)."""
    from bounces.types import SMTP_API_ERROR, SPAM_COMPLAINT

    reason = ""
    if bounce.type == SPAM_COMPLAINT:
        reason = "Spam complaints cannot be reactivated."
    elif not bounce.can_activate:
        reason = f"Bounces of type {bounce.type} cannot be reactivated."
    elif not bounce.inactive:
        reason = "The address is already active."
    elif not request.user.has_perm("bounces.change_bounce"):
        reason = "You may not change bounces."
    message = (
        OutboundMessage.objects.filter(server_id=bounce.server_id, message_id=bounce.message_id)
        .only("id")
        .first()
        if bounce.message_id
        else None
    )
    return {
        "smtp_api_error": smtp_api_error(bounce.content) if bounce.type == SMTP_API_ERROR else None,
        "dump_url": reverse("admin:bounces_bounce_dump", args=[bounce.pk]),
        "reactivate_url": reverse("admin:bounces_bounce_reactivate", args=[bounce.pk]),
        "can_reactivate": not reason,
        "cannot_reactivate_reason": reason,
        "message_url": _change_url(message) if message else "",
    }


@require_POST
def bounce_reactivate(request, object_id):
    bounce = _object(request, Bounce, object_id)
    if not request.user.has_perm("bounces.change_bounce"):
        raise PermissionDenied
    try:
        activate_bounce(bounce)
    except CannotActivate as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{bounce.email} is active again on {bounce.message_stream}.")
    return HttpResponseRedirect(_change_url(bounce))


@require_safe
def message_source(request, object_id):
    message = _object(request, OutboundMessage, object_id)
    return _source_response(request, bytes(message.content), f"{message.message_id}.eml")
