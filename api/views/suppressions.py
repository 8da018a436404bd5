"""The suppressions API of message streams: dump, create, delete (compat §3)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import (
    INVALID_REQUEST,
    ApiError,
)
from api.lookups import stream_of
from api.params import QueryParams
from bounces.serializers import suppression_json
from bounces.services import reactivate_address
from streams import suppressions
from streams.models import Suppression

MAX_SUPPRESSIONS_PER_REQUEST = 50


_P = OpenApiParameter


class SuppressionDumpView(APIView):
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
        stream = stream_of(request, stream_id)
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


class SuppressionCreateView(APIView):
    @extend_schema(
        operation_id="create_suppressions",
        request=_SUPPRESSIONS_BODY,
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request, stream_id: str):
        stream = stream_of(request, stream_id)
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


class SuppressionDeleteView(APIView):
    @extend_schema(
        operation_id="delete_suppressions",
        request=_SUPPRESSIONS_BODY,
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request, stream_id: str):
        stream = stream_of(request, stream_id)
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
