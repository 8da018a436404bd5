"""The webhooks API (compat §4): list, create, read, edit and delete a stream's webhooks."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import (
    INVALID_REQUEST,
    ApiError,
)
from api.lookups import DEFAULT_STREAM, ID_RE, MAX_ID, server_of, stream_of
from api.params import QueryParams
from api.text import has_control, quoted
from webhooks.guard import (
    MAX_URL_LENGTH,
    UnsafeUrl,
    check_url,
    split_credentials,
    validate_headers,
)
from webhooks.models import Webhook
from webhooks.serializers import webhook_json

_P = OpenApiParameter


WEBHOOK_NOT_FOUND = 404
MAX_USERNAME_LENGTH = Webhook._meta.get_field("http_auth_username").max_length
MAX_PASSWORD_LENGTH = 1000
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


def _credentials(username: str, password: str) -> tuple[str, str]:
    """Basic-auth credentials as they can be stored and sent: RFC 7617 allows no control
    characters (NUL included), and the user name has a column of its own."""
    for what, value, limit in (
        ("Username", username, MAX_USERNAME_LENGTH),
        ("Password", password, MAX_PASSWORD_LENGTH),
    ):
        if len(value) > limit:
            raise ApiError(
                INVALID_REQUEST, f"HttpAuth {what} must not be longer than {limit} characters."
            )
        if has_control(value):
            raise ApiError(
                INVALID_REQUEST, f"HttpAuth {what} must not contain control characters (e.g. NUL)."
            )
    return username, password


def _apply_webhook(webhook, data: dict, creating: bool) -> None:
    """Set the fields a Postmark webhook body gives (absent or null ones stay as they are)."""
    auth = data.get("httpauth")
    if auth is not None:
        auth = _lower_keys(auth, "HttpAuth")
        webhook.http_auth_username, webhook.http_auth_password = _credentials(
            str(auth.get("username") or ""), str(auth.get("password") or "")
        )
    url = data.get("url")
    if url is None and creating:
        raise ApiError(INVALID_REQUEST, "Url is required: the address to post events to.")
    if url is not None:
        if not isinstance(url, str) or not url.strip():
            raise ApiError(INVALID_REQUEST, "Url must be a non-empty http:// or https:// URL.")
        if len(url) > MAX_URL_LENGTH:
            raise ApiError(
                INVALID_REQUEST, f"Url must not be longer than {MAX_URL_LENGTH} characters."
            )
        clean, user, password = split_credentials(url)
        if (user or password) and not (auth and (auth.get("username") or auth.get("password"))):
            webhook.http_auth_username, webhook.http_auth_password = _credentials(user, password)
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
    not_found = ApiError(
        WEBHOOK_NOT_FOUND,
        f"Webhook not found: there is no webhook with ID {quoted(webhook_id)} on this server.",
        http_status=404,
    )
    if not ID_RE.match(webhook_id or "") or int(webhook_id) > MAX_ID:
        raise not_found
    webhook = (
        Webhook.objects.select_related("stream")
        .filter(stream__server=server_of(request), pk=int(webhook_id))
        .first()
    )
    if webhook is None:
        raise not_found
    return webhook


class WebhookListView(APIView):
    @extend_schema(
        operation_id="list_webhooks",
        parameters=[_P("MessageStream", str, description="Only this stream's webhooks.")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        found = Webhook.objects.select_related("stream").filter(stream__server=server_of(request))
        stream_id = QueryParams(request, INVALID_REQUEST).get("MessageStream")
        if stream_id:
            found = found.filter(stream=stream_of(request, stream_id))
        return Response({"Webhooks": [webhook_json(w) for w in found.order_by("id")]})

    @extend_schema(operation_id="create_webhook", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def post(self, request):
        data = _webhook_body(request)
        stream_id = data.get("messagestream") or DEFAULT_STREAM
        if not isinstance(stream_id, str):
            raise ApiError(INVALID_REQUEST, "MessageStream must be a stream ID.")
        webhook = Webhook(stream=stream_of(request, stream_id))
        _apply_webhook(webhook, data, creating=True)
        webhook.save()
        return Response(webhook_json(webhook))


class WebhookDetailView(APIView):
    @extend_schema(operation_id="get_webhook", responses=OpenApiTypes.OBJECT)
    def get(self, request, webhook_id: str):
        return Response(webhook_json(_get_webhook(request, webhook_id)))

    @extend_schema(operation_id="edit_webhook", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def put(self, request, webhook_id: str):
        webhook = _get_webhook(request, webhook_id)
        _apply_webhook(webhook, _webhook_body(request), creating=False)
        webhook.save()
        return Response(webhook_json(webhook))

    @extend_schema(operation_id="delete_webhook", responses=OpenApiTypes.OBJECT)
    def delete(self, request, webhook_id: str):
        webhook = _get_webhook(request, webhook_id)
        webhook.delete()
        return Response({"ErrorCode": 0, "Message": f"Webhook {webhook_id} removed."})
