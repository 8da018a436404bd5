"""The bounce API (compat §3) and the suppressions API of message streams, with Postmark's paths,
field names and error codes. Every query is scoped to the server of the request's token."""

import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db.models import Count
from django.db.models.functions import Lower
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from streams import suppressions
from streams.models import Suppression
from streams.services import StreamError, get_stream

from .errors import (
    BOUNCE_NOT_FOUND,
    BOUNCE_QUERY,
    CANNOT_ACTIVATE,
    INVALID_REQUEST,
    STREAM_NOT_FOUND,
    ApiError,
)
from .models import Bounce
from .params import QueryParams
from .serializers import bounce_json, suppression_json
from .services import CannotActivate, activate_bounce, reactivate_address
from .types import BOUNCE_TYPES

MAX_COUNT = 500
MAX_WINDOW = 10_000
MAX_SUPPRESSIONS_PER_REQUEST = 50
DEFAULT_STREAM = "outbound"
_ID_RE = re.compile(r"^[0-9]{1,19}$")
_MAX_ID = 2**63 - 1


def _server(request):
    return request.auth


class BaseApiView(APIView):
    """Token authentication only (no session, no CSRF), JSON only; see settings REST_FRAMEWORK."""


def _get_bounce(request, bounce_id: str) -> Bounce:
    not_found = ApiError(
        BOUNCE_NOT_FOUND,
        f"Bounce not found: there is no bounce with ID {bounce_id} on this server.",
    )
    if not _ID_RE.match(bounce_id or "") or int(bounce_id) > _MAX_ID:
        raise not_found
    bounce = Bounce.objects.filter(server=_server(request), pk=int(bounce_id)).first()
    if bounce is None:
        raise not_found
    return bounce


def _stream(request, stream_id: str):
    try:
        return get_stream(_server(request), stream_id)
    except StreamError as exc:
        raise ApiError(exc.error_code or STREAM_NOT_FOUND, exc.message) from None


_P = OpenApiParameter
_BOUNCE_LIST_PARAMETERS = [
    _P("count", int, description="Bounces to return, 1..500 (required without messageID)."),
    _P("offset", int, description="Bounces to skip (required without messageID); count+offset ≤ "
       "10000."),
    _P("type", str, enum=list(BOUNCE_TYPES)),
    _P("inactive", bool),
    _P("emailFilter", str, description="Substring of the recipient address."),
    _P("tag", str),
    _P("messageID", str),
    _P("fromdate", str, description="Inclusive; naive values are US Eastern time."),
    _P("todate", str, description="Inclusive; naive values are US Eastern time."),
    _P("messagestream", str, description="Stream ID, default outbound."),
]  # fmt: skip


class DeliveryStatsView(BaseApiView):
    @extend_schema(operation_id="get_delivery_stats", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        server = _server(request)
        rows = (
            Bounce.objects.filter(server=server)
            .order_by()
            .values("type")
            .annotate(count=Count("*"))  # COUNT(*): answered from the (server, type) index
        )
        counts = {row["type"]: row["count"] for row in rows}
        inactive = (
            Bounce.objects.filter(server=server, inactive=True)
            .order_by()
            .values(address=Lower("email"))
            .distinct()
            .count()
        )
        bounces = [{"Name": "All", "Count": sum(counts.values())}]
        for kind in sorted(
            (BOUNCE_TYPES[t] for t in counts if t in BOUNCE_TYPES), key=lambda k: k.code
        ):
            bounces.append(
                {
                    "Type": kind.type,
                    "Name": kind.name,
                    "Count": counts[kind.type],
                    "TypeCode": kind.code,
                }
            )
        return Response({"InactiveMails": inactive, "Bounces": bounces})


class BounceListView(BaseApiView):
    @extend_schema(
        operation_id="list_bounces",
        parameters=_BOUNCE_LIST_PARAMETERS,
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        params = QueryParams(request, BOUNCE_QUERY)
        message_id = params.get("messageID")
        count = params.integer("count", 1, MAX_COUNT)
        offset = params.integer("offset", 0)
        if message_id is None:
            if count is None:
                raise params.error("The 'count' parameter is required (1 to 500).")
            if offset is None:
                raise params.error("The 'offset' parameter is required (0 or more).")
        window = (count or 0) + (offset or 0)
        if window > MAX_WINDOW:
            raise params.error(f"count + offset must not exceed {MAX_WINDOW}; it was {window}.")
        found = Bounce.objects.filter(
            server=_server(request), message_stream=params.get("messagestream") or DEFAULT_STREAM
        )
        if message_id is not None:
            found = found.filter(message_id=_uuid(params, message_id))
        kind = params.choice("type", list(BOUNCE_TYPES))
        if kind:
            found = found.filter(type=kind)
        inactive = params.boolean("inactive")
        if inactive is not None:
            found = found.filter(inactive=inactive)
        email = params.get("emailFilter")
        if email:
            found = found.filter(email__icontains=email)
        tag = params.get("tag")
        if tag:
            found = found.filter(tag=tag)
        since = params.moment("fromdate")
        if since:
            found = found.filter(bounced_at__gte=since[0])
        until = params.moment("todate")
        if until:
            found = found.filter(bounced_at__lt=until[1])
        found = found.order_by("-bounced_at", "-id")
        total = found.count()
        start = offset or 0
        page = found[start : start + count] if count is not None else found[start:]
        return Response({"TotalCount": total, "Bounces": [bounce_json(b) for b in page]})


def _uuid(params: QueryParams, value: str):
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise params.error(f"The 'messageID' parameter '{value}' is not a MessageID.") from None


class BounceTagsView(BaseApiView):
    @extend_schema(
        operation_id="list_bounce_tags",
        responses={200: {"type": "array", "items": {"type": "string"}}},
    )
    def get(self, request):
        tags = (
            Bounce.objects.filter(server=_server(request))
            .exclude(tag="")
            .order_by("tag")
            .values_list("tag", flat=True)
            .distinct()
        )
        return Response(list(tags))


class BounceDetailView(BaseApiView):
    @extend_schema(operation_id="get_bounce", responses=OpenApiTypes.OBJECT)
    def get(self, request, bounce_id: str):
        return Response(bounce_json(_get_bounce(request, bounce_id), content=True))


class BounceDumpView(BaseApiView):
    @extend_schema(operation_id="get_bounce_dump", responses=OpenApiTypes.OBJECT)
    def get(self, request, bounce_id: str):
        return Response({"Body": _get_bounce(request, bounce_id).content or ""})


class BounceActivateView(BaseApiView):
    @extend_schema(operation_id="activate_bounce", request=None, responses=OpenApiTypes.OBJECT)
    def put(self, request, bounce_id: str):
        # The body is never read: none, {}, or junk are all fine.
        bounce = _get_bounce(request, bounce_id)
        try:
            bounce = activate_bounce(bounce)
        except CannotActivate as exc:
            raise ApiError(CANNOT_ACTIVATE, exc.message) from None
        return Response({"Message": "OK", "Bounce": bounce_json(bounce)})


class SuppressionDumpView(BaseApiView):
    @extend_schema(
        operation_id="dump_suppressions",
        parameters=[
            _P("SuppressionReason", str, enum=Suppression.Reason.values),
            _P("Origin", str, enum=Suppression.Origin.values),
            _P("fromdate", str),
            _P("todate", str),
            _P("EmailAddress", str),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request, stream_id: str):
        stream = _stream(request, stream_id)
        params = QueryParams(request, INVALID_REQUEST)
        since = params.moment("fromdate")
        until = params.moment("todate")
        found = suppressions.search(
            stream,
            reason=params.choice("SuppressionReason", Suppression.Reason.values),
            origin=params.choice("Origin", Suppression.Origin.values),
            email=params.get("EmailAddress"),
            since=since[0] if since else None,
            before=until[1] if until else None,
        )
        return Response({"Suppressions": [suppression_json(s) for s in found]})


def _requested_addresses(data) -> list:
    """The ``EmailAddress`` values of a ``{"Suppressions": [...]}`` body, as given (None when an
    entry has none). Key names in any case; a bare string stands for its address."""
    if data is None:
        return []
    if isinstance(data, list):
        entries = data
    elif isinstance(data, dict):
        entries = next((v for k, v in data.items() if str(k).lower() == "suppressions"), None)
        if entries is None:
            return []
    else:
        entries = None
    if not isinstance(entries, list):
        raise ApiError(
            INVALID_REQUEST,
            'The request body must be {"Suppressions": [{"EmailAddress": "..."}, ...]}.',
        )
    if len(entries) > MAX_SUPPRESSIONS_PER_REQUEST:
        raise ApiError(
            INVALID_REQUEST,
            f"At most {MAX_SUPPRESSIONS_PER_REQUEST} addresses can be given per request; "
            f"{len(entries)} were.",
        )
    addresses = []
    for entry in entries:
        if isinstance(entry, dict):
            entry = next((v for k, v in entry.items() if str(k).lower() == "emailaddress"), None)
        addresses.append(entry if isinstance(entry, str) else None)
    return addresses


INVALID_ADDRESS = "An invalid email address was provided."


def _valid(address) -> bool:
    if not address or not address.strip():
        return False
    try:
        validate_email(suppressions.normalise(address))
    except DjangoValidationError:
        return False
    return True


_SUPPRESSIONS_BODY = inline_serializer(
    "SuppressionsRequest",
    {
        "Suppressions": serializers.ListField(
            child=inline_serializer("SuppressionEntry", {"EmailAddress": serializers.CharField()})
        )
    },
)


class SuppressionCreateView(BaseApiView):
    @extend_schema(
        operation_id="create_suppressions",
        request=_SUPPRESSIONS_BODY,
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request, stream_id: str):
        stream = _stream(request, stream_id)
        results = []
        for address in _requested_addresses(request.data):
            if not _valid(address):
                results.append(_result(address, "Failed", INVALID_ADDRESS))
                continue
            suppressions.suppress(
                stream, address, Suppression.Reason.MANUAL, Suppression.Origin.CUSTOMER
            )
            results.append(_result(address, "Suppressed"))
        return Response({"Suppressions": results})


class SuppressionDeleteView(BaseApiView):
    @extend_schema(
        operation_id="delete_suppressions",
        request=_SUPPRESSIONS_BODY,
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request, stream_id: str):
        stream = _stream(request, stream_id)
        results = []
        for address in _requested_addresses(request.data):
            if not _valid(address):
                results.append(_result(address, "Failed", INVALID_ADDRESS))
            elif suppressions.is_spam_complaint(stream, address):
                results.append(
                    _result(
                        address,
                        "Failed",
                        "This address cannot be reactivated: its suppression comes from a spam "
                        "complaint, and spam complaints cannot be deleted.",
                    )
                )
            else:
                reactivate_address(stream.server, stream.stream_id, address)
                results.append(_result(address, "Deleted"))
        return Response({"Suppressions": results})


def _result(address, status: str, message: str | None = None) -> dict:
    return {"EmailAddress": address or "", "Status": status, "Message": message}


# --- Webhooks API (compat §4): GET/POST /webhooks, GET/PUT/DELETE /webhooks/{id} ------------------

WEBHOOK_NOT_FOUND = 404
_TRIGGERS = {
    # Postmark trigger → {its field: our model field}
    "open": {"enabled": "open_enabled", "postfirstopenonly": "open_post_first_open_only"},
    "click": {"enabled": "click_enabled"},
    "delivery": {"enabled": "delivery_enabled"},
    "bounce": {"enabled": "bounce_enabled", "includecontent": "bounce_include_content"},
    "spamcomplaint": {
        "enabled": "spam_complaint_enabled",
        "includecontent": "spam_complaint_include_content",
    },
    "subscriptionchange": {"enabled": "subscription_change_enabled"},
}


def _lower_keys(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(INVALID_REQUEST, f"{what} must be a JSON object.")
    return {str(k).lower(): v for k, v in value.items()}


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ApiError(INVALID_REQUEST, f"{name} must be true or false.")


def _apply_webhook(webhook, data: dict, creating: bool) -> None:
    """Set the fields a Postmark webhook body gives (absent or null ones stay as they are)."""
    from .webhooks import UnsafeUrl, check_url, split_credentials, validate_headers

    auth = data.get("httpauth")
    if auth is not None:
        auth = _lower_keys(auth, "HttpAuth")
        webhook.http_auth_username = str(auth.get("username") or "")
        webhook.http_auth_password = str(auth.get("password") or "")
    url = data.get("url")
    if url is None and creating:
        raise ApiError(INVALID_REQUEST, "Url is required: the address to post events to.")
    if url is not None:
        if not isinstance(url, str) or not url.strip():
            raise ApiError(INVALID_REQUEST, "Url must be a non-empty http:// or https:// URL.")
        if len(url) > 2000:
            raise ApiError(INVALID_REQUEST, "Url must not be longer than 2000 characters.")
        clean, user, password = split_credentials(url)
        if (user or password) and not (auth and (auth.get("username") or auth.get("password"))):
            webhook.http_auth_username, webhook.http_auth_password = user, password
        try:
            check_url(clean)
        except UnsafeUrl as exc:
            raise ApiError(INVALID_REQUEST, exc.message) from None
        webhook.url = clean
    headers = data.get("httpheaders")
    if headers is not None or "httpheaders" in data:
        try:
            webhook.http_headers = validate_headers(headers)
        except ValueError as exc:
            raise ApiError(INVALID_REQUEST, str(exc)) from None
    triggers = _lower_keys(data.get("triggers"), "Triggers")
    for trigger, given in triggers.items():
        fields = _TRIGGERS.get(trigger)
        if fields is None or given is None:
            continue
        for key, value in _lower_keys(given, f"Triggers.{trigger}").items():
            if key in fields and value is not None:
                setattr(webhook, fields[key], _flag(value, f"Triggers {trigger} {key}"))


def _webhook_body(request) -> dict:
    data = request.data
    if data in (None, ""):
        return {}
    if not isinstance(data, dict):
        raise ApiError(INVALID_REQUEST, "The request body must be a JSON object.")
    return {str(k).lower(): v for k, v in data.items()}


def _get_webhook(request, webhook_id: str):
    from .models import Webhook

    not_found = ApiError(
        WEBHOOK_NOT_FOUND,
        f"Webhook not found: there is no webhook with ID {webhook_id} on this server.",
        http_status=404,
    )
    if not _ID_RE.match(webhook_id or "") or int(webhook_id) > _MAX_ID:
        raise not_found
    webhook = (
        Webhook.objects.select_related("stream")
        .filter(stream__server=_server(request), pk=int(webhook_id))
        .first()
    )
    if webhook is None:
        raise not_found
    return webhook


class WebhookListView(BaseApiView):
    @extend_schema(
        operation_id="list_webhooks",
        parameters=[_P("MessageStream", str, description="Only this stream's webhooks.")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        from .models import Webhook
        from .serializers import webhook_json

        found = Webhook.objects.select_related("stream").filter(stream__server=_server(request))
        stream_id = QueryParams(request, INVALID_REQUEST).get("MessageStream")
        if stream_id:
            found = found.filter(stream=_stream(request, stream_id))
        return Response({"Webhooks": [webhook_json(w) for w in found.order_by("id")]})

    @extend_schema(operation_id="create_webhook", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def post(self, request):
        from .models import Webhook
        from .serializers import webhook_json

        data = _webhook_body(request)
        stream_id = data.get("messagestream") or DEFAULT_STREAM
        if not isinstance(stream_id, str):
            raise ApiError(INVALID_REQUEST, "MessageStream must be a stream ID.")
        webhook = Webhook(stream=_stream(request, stream_id))
        _apply_webhook(webhook, data, creating=True)
        webhook.save()
        return Response(webhook_json(webhook))


class WebhookDetailView(BaseApiView):
    @extend_schema(operation_id="get_webhook", responses=OpenApiTypes.OBJECT)
    def get(self, request, webhook_id: str):
        from .serializers import webhook_json

        return Response(webhook_json(_get_webhook(request, webhook_id)))

    @extend_schema(operation_id="edit_webhook", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def put(self, request, webhook_id: str):
        from .serializers import webhook_json

        webhook = _get_webhook(request, webhook_id)
        _apply_webhook(webhook, _webhook_body(request), creating=False)
        webhook.save()
        return Response(webhook_json(webhook))

    @extend_schema(operation_id="delete_webhook", responses=OpenApiTypes.OBJECT)
    def delete(self, request, webhook_id: str):
        webhook = _get_webhook(request, webhook_id)
        webhook.delete()
        return Response({"ErrorCode": 0, "Message": f"Webhook {webhook_id} removed."})
