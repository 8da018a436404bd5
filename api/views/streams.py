"""The message streams API (compat §6): list, get, create, edit, archive and unarchive.

The rules are the streams app's (``streams.rules``, ``streams.services``): an ID starts with a
letter, has at most 30 characters and no ``pm-`` prefix, at most ``MAX_STREAMS_PER_SERVER``
streams per server (archived ones count until purged), the default ``outbound`` and ``inbound``
streams cannot be archived. A refused request is HTTP 422 with the rule's ErrorCode (403 for an
invalid field, 1226 for an unknown stream)."""

from django.db import IntegrityError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import INVALID_REQUEST, ApiError
from api.lookups import MAX_STREAM_ID_LENGTH, server_of
from api.params import QueryParams
from api.text import quoted, text_problem
from bounces.serializers import timestamp
from streams.models import MessageStream, StreamType
from streams.rules import StreamError
from streams.services import archive_stream, create_stream, edit_stream, unarchive_stream

STREAM_NOT_FOUND = 1226
STREAM_TYPES = ("All", *StreamType.values)
CREATABLE_TYPES = (StreamType.TRANSACTIONAL, StreamType.BROADCASTS)


def stream_json(stream: MessageStream) -> dict:
    purge = stream.expected_purge_date
    return {
        "ID": stream.stream_id,
        "ServerID": stream.server_id,
        "Name": stream.name,
        "Description": stream.description or "",
        "MessageStreamType": stream.message_stream_type,
        "CreatedAt": timestamp(stream.created_at),
        "UpdatedAt": timestamp(stream.updated_at) or None,
        "ArchivedAt": timestamp(stream.archived_at) or None,
        "ExpectedPurgeDate": timestamp(purge) if purge else None,
        "SubscriptionManagementConfiguration": {
            "UnsubscribeHandlingType": stream.unsubscribe_handling_type or "None"
        },
    }


def stream_for(request, stream_id: str) -> MessageStream:
    """The server's stream ``stream_id`` (archived ones too), or ErrorCode 1226."""
    found = None
    if len(stream_id) <= MAX_STREAM_ID_LENGTH and not text_problem(stream_id):
        found = MessageStream.objects.filter(server=server_of(request), stream_id=stream_id).first()
    if found is None:
        raise ApiError(
            STREAM_NOT_FOUND,
            f"The message stream for the provided 'ID' ({quoted(stream_id)}) was not found.",
        )
    return found


def _field(data: dict, name: str, kind=str):
    """A body field by name in any letter case; None when absent or null."""
    lowered = {str(k).lower(): v for k, v in data.items()}
    value = lowered.get(name.lower())
    if value is None:
        return None
    if not isinstance(value, kind):
        raise ApiError(INVALID_REQUEST, f"The '{name}' field must be a {kind.__name__}.")
    if isinstance(value, str) and text_problem(value):
        raise ApiError(INVALID_REQUEST, f"The '{name}' field {text_problem(value)}.")
    return value


def _body(request) -> dict:
    data = request.data
    if not isinstance(data, dict):
        raise ApiError(INVALID_REQUEST, "The request body must be a JSON object.")
    return data


def _unsubscribe_handling(data: dict) -> str | None:
    config = _field(data, "SubscriptionManagementConfiguration", dict)
    if config is None:
        return None
    return _field(config, "UnsubscribeHandlingType")


def _refused(exc: StreamError) -> ApiError:
    return ApiError(exc.error_code or INVALID_REQUEST, exc.message)


class MessageStreamListView(APIView):
    @extend_schema(
        operation_id="list_message_streams",
        parameters=[
            OpenApiParameter("MessageStreamType", str, enum=list(STREAM_TYPES)),
            OpenApiParameter("IncludeArchivedStreams", bool),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        params = QueryParams(request, INVALID_REQUEST)
        kind = params.choice("MessageStreamType", list(STREAM_TYPES))
        found = MessageStream.objects.filter(server=server_of(request))
        if kind and kind != "All":
            found = found.filter(message_stream_type=kind)
        if not params.boolean("IncludeArchivedStreams"):
            found = found.filter(archived_at__isnull=True)
        streams = [stream_json(s) for s in found.order_by("id")]
        return Response({"MessageStreams": streams, "TotalCount": len(streams)})

    @extend_schema(operation_id="create_message_stream", responses=OpenApiTypes.OBJECT)
    def post(self, request):
        data = _body(request)
        stream_id = _field(data, "ID") or ""
        name = _field(data, "Name")
        if not name or not name.strip():
            raise ApiError(INVALID_REQUEST, "The 'Name' field is required.")
        kind = _field(data, "MessageStreamType")
        if kind is None:
            raise ApiError(INVALID_REQUEST, "The 'MessageStreamType' field is required.")
        by_lower = {t.lower(): t for t in StreamType.values}
        if by_lower.get(kind.lower()) not in CREATABLE_TYPES:
            raise ApiError(
                INVALID_REQUEST,
                f"The 'MessageStreamType' '{quoted(kind)}' cannot be created: use Transactional "
                "or Broadcasts.",
            )
        try:
            stream = create_stream(
                server_of(request),
                stream_id,
                by_lower[kind.lower()],
                name=name.strip()[: MessageStream._meta.get_field("name").max_length],
                description=_field(data, "Description") or "",
                unsubscribe_handling_type=_unsubscribe_handling(data),
            )
        except StreamError as exc:
            raise _refused(exc) from None
        except IntegrityError:  # a concurrent creation of the same ID
            raise ApiError(
                INVALID_REQUEST,
                f"A message stream with the ID '{quoted(stream_id)}' already exists on this "
                "server.",
            ) from None
        return Response(stream_json(stream))


class MessageStreamDetailView(APIView):
    @extend_schema(operation_id="get_message_stream", responses=OpenApiTypes.OBJECT)
    def get(self, request, stream_id: str):
        return Response(stream_json(stream_for(request, stream_id)))

    @extend_schema(operation_id="edit_message_stream", responses=OpenApiTypes.OBJECT)
    def patch(self, request, stream_id: str):
        stream = stream_for(request, stream_id)
        data = _body(request)
        try:
            stream = edit_stream(
                stream,
                name=_field(data, "Name"),
                description=_field(data, "Description"),
                unsubscribe_handling_type=_unsubscribe_handling(data),
            )
        except StreamError as exc:
            raise _refused(exc) from None
        return Response(stream_json(stream))


class MessageStreamArchiveView(APIView):
    @extend_schema(
        operation_id="archive_message_stream", request=None, responses=OpenApiTypes.OBJECT
    )
    def post(self, request, stream_id: str):
        try:
            stream = archive_stream(stream_for(request, stream_id))
        except StreamError as exc:
            raise _refused(exc) from None
        return Response(
            {
                "ID": stream.stream_id,
                "ServerID": stream.server_id,
                "ExpectedPurgeDate": timestamp(stream.expected_purge_date),
            }
        )


class MessageStreamUnarchiveView(APIView):
    @extend_schema(
        operation_id="unarchive_message_stream", request=None, responses=OpenApiTypes.OBJECT
    )
    def post(self, request, stream_id: str):
        return Response(stream_json(unarchive_stream(stream_for(request, stream_id))))
