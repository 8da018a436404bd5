"""The Server API (``/server``, server token) and the Servers API (``/servers``, account token),
compat §12: a server in Postmark's fields, every field always present. The rules live in
``servers.services`` (the server's own fields) and ``webhooks.server_hooks`` (the hook URLs, which
are the outbound stream's webhooks)."""

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.account import AccountView, body_fields, object_id, page
from api.errors import ApiError
from api.lookups import server_of
from api.params import QueryParams
from api.text import quoted
from servers.models import Server
from servers.services import (
    CANNOT_DELETE,
    NO_DATA,
    NO_DELETE_PERMISSION,
    SERVER_NOT_FOUND,
    SERVER_QUERY,
    ServerError,
    inbound_address,
)
from webhooks.server_hooks import create_server_from, edit_server, hook_fields

_P = OpenApiParameter


def server_object(server: Server) -> dict:
    """The Server object of compat §12.1 (unset strings are "")."""
    hooks = hook_fields(server)
    return {
        "ID": server.pk,
        "Name": server.name,
        "ApiTokens": server.api_tokens,
        "ServerLink": settings.TRACKING_BASE_URL.rstrip("/")
        + reverse("admin:servers_server_change", args=[server.pk]),
        "Color": server.color,
        "SmtpApiActivated": server.smtp_api_activated,
        "RawEmailEnabled": server.raw_email_enabled,
        "DeliveryType": server.delivery_type,
        "InboundAddress": inbound_address(server, settings.INBOUND_DOMAIN),
        "InboundHash": server.inbound_hash,
        "InboundDomain": server.inbound_domain,
        "InboundHookUrl": hooks["InboundHookUrl"],
        "BounceHookUrl": hooks["BounceHookUrl"],
        "OpenHookUrl": hooks["OpenHookUrl"],
        "DeliveryHookUrl": hooks["DeliveryHookUrl"],
        "ClickHookUrl": hooks["ClickHookUrl"],
        "PostFirstOpenOnly": hooks["PostFirstOpenOnly"],
        "InboundSpamThreshold": server.inbound_spam_threshold,
        "TrackOpens": server.track_opens,
        "TrackLinks": server.track_links,
        "IncludeBounceContentInHook": hooks["IncludeBounceContentInHook"],
        "EnableSmtpApiErrorHooks": server.enable_smtp_api_error_hooks,
    }


def _body(request) -> dict:
    data = body_fields(request)
    if not any(value is not None for value in data.values()):
        raise ApiError(NO_DATA, "No data was given: send the fields to set as a JSON object.")
    return data


def _edit(server: Server, request) -> Response:
    data = _body(request)
    try:
        edit_server(server, data)
    except ServerError as exc:
        raise ApiError(exc.error_code, exc.message) from None
    return Response(server_object(Server.objects.get(pk=server.pk)))


def _get_server(server_id: str) -> Server:
    pk = object_id(server_id)
    server = Server.objects.filter(pk=pk).first() if pk else None
    if server is None:
        raise ApiError(
            SERVER_NOT_FOUND,
            f"The server was not found: there is no server with ID {quoted(server_id)}.",
        )
    return server


class ServerView(APIView):
    """``/server``: the server of the token."""

    @extend_schema(operation_id="get_server", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(server_object(server_of(request)))

    @extend_schema(operation_id="edit_server", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def put(self, request):
        return _edit(server_of(request), request)


class ServerListView(AccountView):
    @extend_schema(
        operation_id="list_servers",
        parameters=[
            _P("count", int, required=True, description="Servers to return, 1..500."),
            _P("offset", int, required=True, description="Servers to skip."),
            _P("name", str, description="Only servers whose name contains this."),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        found = Server.objects.order_by("id")
        name = QueryParams(request, SERVER_QUERY).get("name")
        if name:
            found = found.filter(name__icontains=name)
        total, servers = page(request, SERVER_QUERY, found.prefetch_related("tokens"))
        return Response({"TotalCount": total, "Servers": [server_object(s) for s in servers]})

    @extend_schema(operation_id="create_server", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def post(self, request):
        data = _body(request)
        try:
            server = create_server_from(data)
        except ServerError as exc:
            raise ApiError(exc.error_code, exc.message) from None
        return Response(server_object(server))


class ServerDetailView(AccountView):
    @extend_schema(operation_id="get_server_by_id", responses=OpenApiTypes.OBJECT)
    def get(self, request, server_id: str):
        return Response(server_object(_get_server(server_id)))

    @extend_schema(operation_id="edit_server_by_id", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def put(self, request, server_id: str):
        return _edit(_get_server(server_id), request)

    @extend_schema(operation_id="delete_server", responses=OpenApiTypes.OBJECT)
    def delete(self, request, server_id: str):
        server = _get_server(server_id)
        if not settings.ALLOW_SERVER_DELETION_BY_API:
            raise ApiError(
                NO_DELETE_PERMISSION,
                "You don't have permission to delete servers through the API: this installation "
                "does not allow it (ALLOW_SERVER_DELETION_BY_API). Delete it in the admin.",
            )
        if server.name == settings.SYSTEM_SERVER_NAME:
            raise ApiError(
                CANNOT_DELETE,
                f"The server '{server.name}' sends the service's own mail: it cannot be deleted.",
            )
        with transaction.atomic():
            server.delete()
        return Response({"ErrorCode": 0, "Message": f"Server {server.name} removed."})
