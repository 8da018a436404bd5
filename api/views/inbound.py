"""The Messages API for inbound mail and the inbound rule triggers (compat §13.3, §13.4).

Every look-up is scoped to the token's server: another server's MessageID or rule ID is not
found (701, 812), exactly as an unknown one. Bypass and retry go through ``inbound.services``,
which holds what they do; a message in another state is "not found or cannot be …" (701)."""

import logging

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApiError
from api.lookups import server_of
from api.params import QueryParams
from api.views.messages import MAX_COUNT, MESSAGE_NOT_FOUND, MESSAGE_QUERY, page_bounds
from inbound import services, triggers
from inbound.models import InboundMessage
from inbound.queries import STATUSES, as_message_id, details, filter_inbound, list_item, list_rows

logger = logging.getLogger(__name__)

# Postmark's sentences (compat §13.3).
NOT_FOUND_TEXT = "This message was not found."
CANNOT_BYPASS_TEXT = "This message was not found or cannot be bypassed."
CANNOT_RETRY_TEXT = "This message was not found or cannot be retried."
BYPASS_FAILED, RETRY_FAILED = 702, 703
MAX_RULE_OFFSET = 1_000_000


def inbound_message_of(request, message_id: str, not_found: str = NOT_FOUND_TEXT):
    """The server's inbound message ``message_id``, or ErrorCode 701 with ``not_found``."""
    parsed = as_message_id(message_id)
    found = None
    if parsed is not None:
        found = (
            InboundMessage.objects.filter(server=server_of(request), message_id=parsed)
            .select_related("server", "stream")
            .first()
        )
    if found is None:
        raise ApiError(MESSAGE_NOT_FOUND, not_found)
    return found


_P = OpenApiParameter
_LIST_PARAMETERS = [
    _P("count", int, required=True, description="Messages to return, 1..500."),
    _P("offset", int, required=True, description="Messages to skip; count+offset ≤ 10000."),
    _P("recipient", str, description="The address it was received for, or one in To or Cc."),
    _P("fromemail", str, description="The sender's address, or a part of it or of its name."),
    _P("tag", str),
    _P("subject", str, description="Part of the subject."),
    _P("mailboxhash", str, description="The text after + in the inbound address."),
    _P("status", str, enum=list(STATUSES)),
    _P("fromdate", str, description="Inclusive; naive values are US Eastern time."),
    _P("todate", str, description="Inclusive; naive values are US Eastern time."),
]  # fmt: skip


class InboundMessageListView(APIView):
    @extend_schema(
        operation_id="list_inbound_messages",
        parameters=_LIST_PARAMETERS,
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        params = QueryParams(request, MESSAGE_QUERY)
        count, offset = page_bounds(params)
        since, until = params.moment("fromdate"), params.moment("todate")
        found = filter_inbound(
            InboundMessage.objects.filter(server=server_of(request)),
            recipient=params.get("recipient"),
            from_email=params.get("fromemail"),
            tag=params.get("tag"),
            subject=params.get("subject"),
            mailbox_hash=params.get("mailboxhash"),
            status=params.choice("status", list(STATUSES)),
            since=since[0] if since else None,
            until=until[1] if until else None,
        )
        total = found.count()
        # The page's ids from the (server, received_at) index first, then only those rows.
        newest_first = found.order_by("-received_at", "-id").values_list("id", flat=True)
        ids = list(newest_first[offset : offset + count])
        rows = {row["id"]: row for row in list_rows(InboundMessage.objects.filter(id__in=ids))}
        items = [list_item(rows[i]) for i in ids if i in rows]
        return Response({"TotalCount": total, "InboundMessages": items})


class InboundMessageDetailsView(APIView):
    @extend_schema(operation_id="get_inbound_message_details", responses=OpenApiTypes.OBJECT)
    def get(self, request, message_id: str):
        return Response(details(inbound_message_of(request, message_id)))


def _act(request, message_id, *, status, action, cannot, failed_code, done):
    message = inbound_message_of(request, message_id, cannot)
    if message.status != status:
        raise ApiError(MESSAGE_NOT_FOUND, cannot)
    try:
        changed = action(message)
    except Exception:  # the service's own failure: Postmark's 702/703, never a 500
        logger.exception("inbound %s of %s failed", action.__name__, message.message_id)
        raise ApiError(
            failed_code, f"The message could not be {done}: an internal error occurred."
        ) from None
    if changed is False:  # taken by another request meanwhile, or no longer in that state
        raise ApiError(MESSAGE_NOT_FOUND, cannot)
    return message


class InboundBypassView(APIView):
    @extend_schema(
        operation_id="bypass_inbound_message", request=None, responses=OpenApiTypes.OBJECT
    )
    def put(self, request, message_id: str):
        message = _act(request, message_id, status=InboundMessage.Status.BLOCKED,
                       action=services.bypass, cannot=CANNOT_BYPASS_TEXT,
                       failed_code=BYPASS_FAILED, done="bypassed")  # fmt: skip
        return Response(
            {"ErrorCode": 0, "Message": f"Successfully bypassed message: {message.message_id}."}
        )


class InboundRetryView(APIView):
    @extend_schema(
        operation_id="retry_inbound_message", request=None, responses=OpenApiTypes.OBJECT
    )
    def put(self, request, message_id: str):
        message = _act(request, message_id, status=InboundMessage.Status.FAILED,
                       action=services.retry, cannot=CANNOT_RETRY_TEXT,
                       failed_code=RETRY_FAILED, done="retried")  # fmt: skip
        return Response(
            {
                "ErrorCode": 0,
                "Message": f"Successfully rescheduled failed message: {message.message_id}.",
            }
        )


# --- Inbound rule triggers ----------------------------------------------------------------------


def _rule_error(exc: triggers.RuleError) -> ApiError:
    return ApiError(exc.error_code, exc.message)


class InboundRuleListView(APIView):
    @extend_schema(
        operation_id="list_inbound_rules",
        parameters=[
            _P("count", int, required=True, description="Rules to return, 1..500."),
            _P("offset", int, required=True, description="Rules to skip."),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        params = QueryParams(request, triggers.RULE_QUERY)
        count = params.integer("count", 1, MAX_COUNT)
        offset = params.integer("offset", 0, MAX_RULE_OFFSET)
        if count is None:
            raise params.error(f"The 'count' parameter is required (1 to {MAX_COUNT}).")
        if offset is None:
            raise params.error("The 'offset' parameter is required (0 or more).")
        rules = server_of(request).inbound_rules.order_by("id")
        page = rules[offset : offset + count]
        return Response(
            {"TotalCount": rules.count(), "InboundRules": [triggers.rule_json(r) for r in page]}
        )

    @extend_schema(
        operation_id="create_inbound_rule",
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        value = next((v for k, v in data.items() if k.lower() == "rule"), None)
        try:
            rule = triggers.create_rule(server_of(request), value)
        except triggers.RuleError as exc:
            raise _rule_error(exc) from None
        return Response(triggers.rule_json(rule))


class InboundRuleDetailView(APIView):
    @extend_schema(operation_id="delete_inbound_rule", responses=OpenApiTypes.OBJECT)
    def delete(self, request, rule_id: str):
        try:
            message = triggers.delete_rule(server_of(request), rule_id)
        except triggers.RuleError as exc:
            raise _rule_error(exc) from None
        return Response({"ErrorCode": 0, "Message": message})


class TagTriggersView(APIView):
    """``/triggers/tags``: Postmark's tag triggers, which it has discontinued (its own clients
    dropped them); postmarker still calls them. Answered with a clear error, not a blank 404."""

    @extend_schema(exclude=True)
    def get(self, request, trigger_id: str | None = None):
        raise ApiError(
            404,
            "Tag triggers are discontinued (as in Postmark): set tracking per message or per "
            "server, and use webhooks to hear about a tag's messages.",
            http_status=404,
        )

    post = put = delete = get
