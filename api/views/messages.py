"""The Messages API (compat §7): outbound message search, details, dump, opens and clicks.

A MessageID from the SMTP gateway's ``250 … queued as <MessageID>`` and one from ``POST /email``
are the same kind of id (``OutboundMessage.message_id``) and are looked up the same way. What the
statuses mean, and why a refused message is not found: ``messages.queries``."""

from types import SimpleNamespace

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApiError
from api.lookups import DEFAULT_STREAM, server_of, stream_of
from api.params import QueryParams
from api.text import quoted, text_problem
from messages.models import MessageEvent, OutboundMessage
from messages.queries import (
    AGENT_FILTERS,
    CLICK,
    OPEN,
    STATUSES,
    as_message_id,
    filter_messages,
    filter_reader_events,
)
from messages.serializers import LIST_FIELDS, message_details_json, message_row_json
from streams.models import MessageStream
from webhooks.serializers import webhook_payload

MESSAGE_QUERY = 700
MESSAGE_NOT_FOUND = 701
MESSAGE_NOT_FOUND_TEXT = "This message was not found."  # Postmark's sentence
MAX_COUNT = 500
MAX_WINDOW = 10_000
METADATA_PREFIX = "metadata_"
MAX_METADATA_KEY = 200


def page_bounds(params: QueryParams) -> tuple[int, int]:
    """(count, offset): both required; count 1..500, count + offset ≤ 10,000."""
    count = params.integer("count", 1, MAX_COUNT)
    offset = params.integer("offset", 0)
    if count is None:
        raise params.error(f"The 'count' parameter is required (1 to {MAX_COUNT}).")
    if offset is None:
        raise params.error("The 'offset' parameter is required (0 or more).")
    if count + offset > MAX_WINDOW:
        raise params.error(f"count + offset must not exceed {MAX_WINDOW}; it was {count + offset}.")
    return count, offset


def metadata_filters(request, params: QueryParams) -> dict[str, str]:
    """``metadata_<key>=<value>`` parameters (the prefix in any case, the key as given)."""
    found = {}
    for name, value in request.query_params.items():
        if not name.lower().startswith(METADATA_PREFIX):
            continue
        key, value = name[len(METADATA_PREFIX) :], value.strip()
        if not key or not value:
            continue
        problem = text_problem(key) or text_problem(value)
        if problem or len(key) > MAX_METADATA_KEY:
            raise params.error(
                f"The '{quoted(name)}' parameter {problem or 'names too long a metadata key'}."
            )
        found[key] = value
    return found


def message_of(request, message_id: str) -> OutboundMessage:
    """The server's outbound message ``message_id``, or ErrorCode 701."""
    parsed = as_message_id(message_id)
    found = None
    if parsed is not None:
        found = (
            OutboundMessage.objects.filter(server=server_of(request), message_id=parsed)
            .select_related("stream")
            .first()
        )
    if found is None:
        raise ApiError(MESSAGE_NOT_FOUND, MESSAGE_NOT_FOUND_TEXT)
    return found


def _stream_filter(request, params: QueryParams):
    return stream_of(request, params.get("messagestream") or DEFAULT_STREAM)


_P = OpenApiParameter
_LIST_PARAMETERS = [
    _P("count", int, required=True, description="Messages to return, 1..500."),
    _P("offset", int, required=True, description="Messages to skip; count+offset ≤ 10000."),
    _P("recipient", str, description="An envelope recipient (whole address, any case)."),
    _P("fromemail", str, description="Part of the From header."),
    _P("tag", str),
    _P("status", str, enum=list(STATUSES)),
    _P("subject", str, description="Part of the subject."),
    _P("fromdate", str, description="Inclusive; naive values are US Eastern time."),
    _P("todate", str, description="Inclusive; naive values are US Eastern time."),
    _P("messagestream", str, description="Stream ID, default outbound."),
]  # fmt: skip


class OutboundMessageListView(APIView):
    @extend_schema(
        operation_id="list_outbound_messages",
        parameters=_LIST_PARAMETERS,
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        params = QueryParams(request, MESSAGE_QUERY)
        count, offset = page_bounds(params)
        since, until = params.moment("fromdate"), params.moment("todate")
        found = filter_messages(
            OutboundMessage.objects.filter(server=server_of(request)),
            stream=_stream_filter(request, params),
            recipient=params.get("recipient"),
            from_email=params.get("fromemail"),
            tag=params.get("tag"),
            status=params.choice("status", list(STATUSES)),
            subject=params.get("subject"),
            since=since[0] if since else None,
            until=until[1] if until else None,
            metadata=metadata_filters(request, params),
        )
        total = found.count()
        # The page's ids first, from the index alone (a deep page skips up to 9,500 index
        # entries, not 9,500 rows), then those rows: as values, not model instances (building
        # 500 of those would cost more than the queries).
        newest_first = found.order_by("-received_at", "-id").values_list("id", flat=True)
        ids = list(newest_first[offset : offset + count])
        found_rows = OutboundMessage.objects.filter(id__in=ids).values("id", *LIST_FIELDS)
        rows = {row["id"]: row for row in found_rows}
        stream_ids = dict(
            MessageStream.objects.filter(server=server_of(request)).values_list("id", "stream_id")
        )
        messages = [
            message_row_json(rows[i], stream_ids.get(rows[i]["stream_id"], ""))
            for i in ids
            if i in rows
        ]
        return Response({"TotalCount": total, "Messages": messages})


class OutboundMessageDetailsView(APIView):
    @extend_schema(operation_id="get_outbound_message_details", responses=OpenApiTypes.OBJECT)
    def get(self, request, message_id: str):
        return Response(message_details_json(message_of(request, message_id)))


class OutboundMessageDumpView(APIView):
    @extend_schema(operation_id="get_outbound_message_dump", responses=OpenApiTypes.OBJECT)
    def get(self, request, message_id: str):
        message = message_of(request, message_id)
        return Response({"Body": bytes(message.content).decode("utf-8", "replace")})


def _agent_filters(params: QueryParams) -> dict[str, str]:
    """The reader filters given, by Postmark's name (``client_name``) or the official SDKs'
    (``clientName``: the same without the underscore, in any case)."""
    found = {}
    for name in AGENT_FILTERS:
        value = params.get(name) or params.get(name.replace("_", ""))
        if value:
            found[name] = value
    return found


def _reader_events(request, kind: str, message_id: str | None, key: str):
    params = QueryParams(request, MESSAGE_QUERY)
    count, offset = page_bounds(params)
    message = message_of(request, message_id) if message_id is not None else None
    stream = None
    if message is None and params.get("messagestream"):
        stream = stream_of(request, params.get("messagestream"))
    found = filter_reader_events(
        MessageEvent.objects.filter(server=server_of(request)),
        kind=kind,
        message_id=message.message_id if message is not None else None,
        stream=stream,
        recipient=params.get("recipient"),
        tag=params.get("tag"),
        agent=_agent_filters(params),
    )
    total = found.count()
    rows = found.order_by("-occurred_at", "-id").values(*READER_EVENT_FIELDS)
    events = [_reader_event(row) for row in rows[offset : offset + count]]
    return Response({"TotalCount": total, key: [webhook_payload(e) for e in events]})


def _reader_event(row: dict) -> SimpleNamespace:
    """An Open or Click event as ``webhook_payload`` reads it, from a ``values()`` row: the
    payload code is the webhooks', without building three model instances per event."""
    stream, tag = row["stream__stream_id"], row["outbound__tag"]
    outbound = None
    if tag is not None:  # the message is still there
        outbound = SimpleNamespace(tag=tag, metadata=row["outbound__metadata"])
    return SimpleNamespace(
        **{name: row[name] for name in READER_EVENT_FIELDS if "__" not in name},
        bounce=None,
        stream=SimpleNamespace(stream_id=stream) if stream is not None else None,
        outbound=outbound,
    )


# What an Open or Click payload reads (webhooks.serializers.webhook_payload).
READER_EVENT_FIELDS = (
    "server_id", "type", "recipient", "message_id", "data", "occurred_at", "details",
    "stream__stream_id", "outbound__tag", "outbound__metadata",
)  # fmt: skip

_READER_PARAMETERS = [
    _P("count", int, required=True),
    _P("offset", int, required=True),
    _P("recipient", str),
    _P("tag", str),
    *[_P(name, str) for name in AGENT_FILTERS],
    _P("messagestream", str, description="Stream ID; all streams when absent."),
]


class OpensView(APIView):
    @extend_schema(
        operation_id="list_opens", parameters=_READER_PARAMETERS, responses=OpenApiTypes.OBJECT
    )
    def get(self, request, message_id: str | None = None):
        return _reader_events(request, OPEN, message_id, "Opens")


class ClicksView(APIView):
    @extend_schema(
        operation_id="list_clicks", parameters=_READER_PARAMETERS, responses=OpenApiTypes.OBJECT
    )
    def get(self, request, message_id: str | None = None):
        return _reader_events(request, CLICK, message_id, "Clicks")
