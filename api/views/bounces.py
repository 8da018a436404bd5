"""The bounce API (compat §3): list, tags, one bounce, its dump, and activation."""

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import (
    BOUNCE_NOT_FOUND,
    BOUNCE_QUERY,
    CANNOT_ACTIVATE,
    ApiError,
)
from api.lookups import DEFAULT_STREAM, ID_RE, MAX_ID, server_of
from api.params import QueryParams
from api.text import quoted
from bounces.models import Bounce
from bounces.queries import filter_bounces
from bounces.serializers import bounce_json
from bounces.services import CannotActivate, activate_bounce
from bounces.types import BOUNCE_TYPES

MAX_COUNT = 500
MAX_WINDOW = 10_000


def _get_bounce(request, bounce_id: str) -> Bounce:
    not_found = ApiError(
        BOUNCE_NOT_FOUND,
        f"Bounce not found: there is no bounce with ID {quoted(bounce_id)} on this server.",
    )
    if not ID_RE.match(bounce_id or "") or int(bounce_id) > MAX_ID:
        raise not_found
    bounce = Bounce.objects.filter(server=server_of(request), pk=int(bounce_id)).first()
    if bounce is None:
        raise not_found
    return bounce


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
    _P("messagestream", str, description="Stream ID, default outbound (with messageID: every "
       "stream)."),
]  # fmt: skip


class BounceListView(APIView):
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
        since = params.moment("fromdate")
        until = params.moment("todate")
        found = filter_bounces(
            Bounce.objects.filter(server=server_of(request)),
            # A message's bounces are found in every stream unless one is named.
            message_stream=params.get("messagestream")
            or (None if message_id is not None else DEFAULT_STREAM),
            message_id=_uuid(params, message_id) if message_id is not None else None,
            type=params.choice("type", list(BOUNCE_TYPES)),
            inactive=params.boolean("inactive"),
            email=params.get("emailFilter"),
            tag=params.get("tag"),
            since=since[0] if since else None,
            until=until[1] if until else None,
        )
        found = found.order_by("-bounced_at", "-id")
        total = found.count()
        start = offset or 0
        page = found[start : start + count] if count is not None else found[start:]
        return Response({"TotalCount": total, "Bounces": [bounce_json(b) for b in page]})


def _uuid(params: QueryParams, value: str):
    try:
        return uuid.UUID(value)
    except ValueError:
        raise params.error(
            f"The 'messageID' parameter '{quoted(value)}' is not a MessageID."
        ) from None


class BounceTagsView(APIView):
    @extend_schema(
        operation_id="list_bounce_tags",
        responses={200: {"type": "array", "items": {"type": "string"}}},
    )
    def get(self, request):
        tags = (
            Bounce.objects.filter(server=server_of(request))
            .exclude(tag="")
            .order_by("tag")
            .values_list("tag", flat=True)
            .distinct()
        )
        return Response(list(tags))


class BounceDetailView(APIView):
    @extend_schema(operation_id="get_bounce", responses=OpenApiTypes.OBJECT)
    def get(self, request, bounce_id: str):
        return Response(bounce_json(_get_bounce(request, bounce_id), content=True))


class BounceDumpView(APIView):
    @extend_schema(operation_id="get_bounce_dump", responses=OpenApiTypes.OBJECT)
    def get(self, request, bounce_id: str):
        return Response({"Body": _get_bounce(request, bounce_id).dump_text})


class BounceActivateView(APIView):
    @extend_schema(operation_id="activate_bounce", request=None, responses=OpenApiTypes.OBJECT)
    def put(self, request, bounce_id: str):
        # The body is never read: none, {}, or junk are all fine.
        bounce = _get_bounce(request, bounce_id)
        try:
            bounce = activate_bounce(bounce)
        except CannotActivate as exc:
            raise ApiError(CANNOT_ACTIVATE, exc.message) from None
        return Response({"Message": "OK", "Bounce": bounce_json(bounce)})
