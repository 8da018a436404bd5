"""The project's admin site: the operator dashboard, and what a model's change page shows that its
own app cannot know (a message's webhook posts, the message behind a bounce).

It sits at the top of the dependency order (it may import every app) and is installed through
``postmark_site.apps.PostmarkAdminConfig``, so each app's ``admin.py`` registers with it through
``django.contrib.admin.site`` as usual. Every model admin registered here is scoped by staff server
access: it subclasses ``ServerScopedAdmin`` (servers.scoping) in its own source, and ``register``
refuses one that does not. django.contrib.auth's module registers Django's own User and Group
admins when it is imported; ``servers.admin`` replaces them with scoped subclasses, and
``PostmarkAdminConfig.ready`` refuses to start if any unscoped admin is left.
"""

import contextlib

from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import Count
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_safe

from bounces.models import Bounce
from inbound.addresses import inbound_address
from inbound.models import InboundMessage
from messages.limits import sending_use
from messages.models import OutboundMessage
from messages.senders import RECENT_DAYS, sender_states
from postmark_site import system
from postmark_site.charts import chart_svg
from servers.access import visible_server_ids, visible_servers
from servers.models import Server
from servers.scoping import ServerScopedAdmin, change_url
from stats import outbound as outbound_stats
from stats.timeline import message_timeline

# The module that registers Django's own User and Group admins with the default site on import.
DJANGO_AUTH = "django.contrib.auth.admin"


class PostmarkAdminSite(admin.AdminSite):
    site_header = "Postmark-compatible mail"
    site_title = "Mail admin"
    index_title = "Servers, streams, messages and bounces"
    # The top navigation (templates/admin/base_site.html) and the model index take its place:
    # beside a changelist and its filters it left the list too narrow for its columns.
    enable_nav_sidebar = False

    def __init__(self, name="admin"):
        super().__init__(name)
        # model -> function(request, obj) -> extra context of its change page
        self.change_page_context = {
            OutboundMessage: message_page_context,
            Bounce: bounce_page_context,
            Server: server_page_context,
        }

    def register(self, model_or_iterable, admin_class=None, **options):
        """Registers a model admin that subclasses ServerScopedAdmin; refuses any other (but the
        ones django.contrib.auth registers on import, which servers.admin replaces)."""
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, ServerScopedAdmin) and admin_class.__module__ != DJANGO_AUTH:
            raise ImproperlyConfigured(
                f"{admin_class.__module__}.{admin_class.__qualname__} does not subclass "
                "servers.scoping.ServerScopedAdmin: every model admin of this site is scoped "
                "by staff server access"
            )
        super().register(model_or_iterable, admin_class, **options)

    def unscoped_admins(self) -> list[str]:
        """The registered model admins that are not ServerScopedAdmin subclasses (none, once
        servers.admin has replaced django.contrib.auth's)."""
        return sorted(
            f"{model._meta.label}: {type(model_admin).__qualname__}"
            for model, model_admin in self._registry.items()
            if not isinstance(model_admin, ServerScopedAdmin)
        )

    def login(self, request, extra_context=None):
        """Without a ``next``, signing in lands on the dashboard rather than the model index."""
        if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
            request.GET = request.GET.copy()
            request.GET[REDIRECT_FIELD_NAME] = reverse("admin:dashboard", current_app=self.name)
        return super().login(request, extra_context)

    def get_urls(self):
        return [
            path("dashboard/", self.admin_view(self.dashboard_view), name="dashboard"),
            path("system/", self.admin_view(self.system_view), name="system"),
            *super().get_urls(),
        ]

    @staticmethod
    def _dashboard_context(request) -> dict:
        visible = visible_server_ids(request.user)
        window = request.GET.get("window", outbound_stats.DEFAULT_WINDOW)
        if window not in outbound_stats.WINDOWS:
            window = outbound_stats.DEFAULT_WINDOW
        selected = None
        with contextlib.suppress(ValueError):
            selected = int(request.GET.get("server", ""))
        if selected is not None and visible is not None and selected not in visible:
            raise Http404("No such server.")
        ids = [selected] if selected is not None else visible
        data = outbound_stats.collect(ids)
        label = outbound_stats.WINDOWS[window][0]
        overall = [
            outbound_stats.Bucket(b) for b in outbound_stats.window_buckets(window, data.now)
        ]
        for server_stats in data.servers:
            for total, bucket in zip(overall, server_stats.series[window], strict=True):
                total.counts.add(bucket.counts)
            server_stats.chart = chart_svg(
                server_stats.series[window], window, title=f"{server_stats.server.name}: {label}"
            )
        servers_for_menu = (
            data.servers and [s.server for s in data.servers]
            if selected is None
            else list(visible_servers(request.user).only("id", "name"))
        )
        return {
            "title": "Dashboard",
            "data": data,
            "window": window,
            "window_label": label,
            "windows": [(key, value[0]) for key, value in outbound_stats.WINDOWS.items()],
            "selected_server": selected,
            "servers_for_menu": servers_for_menu or [],
            "overall_chart": chart_svg(overall, window, title=f"All servers: {label}"),
            "window_keys": list(outbound_stats.WINDOWS),
            "refused_senders": [
                s for s in sender_states(ids, recent_messages=False) if not s.allowed
            ],
            "sender_days": RECENT_DAYS,
        }

    @method_decorator(require_safe)
    def dashboard_view(self, request):
        context = {**self.each_context(request), **self._dashboard_context(request)}
        return TemplateResponse(request, "admin/dashboard.html", context)

    @method_decorator(require_safe)
    def system_view(self, request):
        """Where mail waits, across every server: for staff who see all servers."""
        if visible_server_ids(request.user) is not None:
            raise PermissionDenied("The System page shows every server's queues.")
        context = {**self.each_context(request), "title": "System", **system.context()}
        return TemplateResponse(request, "admin/system.html", context)


def message_page_context(request, message) -> dict:
    return {"timeline": message_timeline(message)}


def server_page_context(request, server) -> dict:
    """The server's sending limits with their current use (read now, not cached), and the
    state of the From addresses it uses."""
    senders = sender_states([server.pk])
    return {
        "sending_use": sending_use(server.pk, whole_day=True),
        "sender_states": senders,
        "refused_senders": [s for s in senders if not s.allowed],
        "sender_days": RECENT_DAYS,
        "domains_url": reverse("admin:domains_domain_changelist"),
        "senders_url": reverse("admin:domains_sendersignature_changelist"),
        **inbound_panel_context(server),
    }


def inbound_panel_context(server) -> dict:
    """The server page's inbound panel: where mail for the server is sent, where it goes, and
    what waits for an operator (blocked and failed messages)."""
    address = inbound_address(server)
    local, _, domain = address.rpartition("@")
    waiting = dict(
        InboundMessage.objects.filter(
            server=server, status__in=(InboundMessage.Status.BLOCKED, InboundMessage.Status.FAILED)
        )
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    messages_url = reverse("admin:inbound_inboundmessage_changelist")
    return {
        "inbound_address": address,
        "inbound_plus_example": f"{local}+ticket-42@{domain}",
        "inbound_messages_url": f"{messages_url}?server__id__exact={server.pk}",
        "inbound_rules_url": reverse("admin:inbound_inboundrule_changelist")
        + f"?server__id__exact={server.pk}",
        "inbound_rule_add_url": reverse("admin:inbound_inboundrule_add") + f"?server={server.pk}",
        "inbound_blocked": waiting.get(InboundMessage.Status.BLOCKED, 0),
        "inbound_failed": waiting.get(InboundMessage.Status.FAILED, 0),
    }


def bounce_page_context(request, bounce) -> dict:
    """A link to the message the bounce is about, when it is still kept."""
    message = (
        OutboundMessage.objects.filter(server_id=bounce.server_id, message_id=bounce.message_id)
        .only("id")
        .first()
        if bounce.message_id
        else None
    )
    return {"message_url": change_url(message) if message else ""}
