"""The Data removal API (compat §15, account token): ``POST /data-removals`` asks for every stored
trace of an address to be erased, in every server, by a background task; ``GET
/data-removals/{id}`` tells its status (Pending, then Done). The rules live in ``privacy``."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from api.account import AccountView, body_fields, object_id
from api.errors import ApiError
from api.text import quoted
from privacy.models import DataRemoval
from privacy.services import RemovalError, request_removal

# Postmark's error codes of the Data removal API (HTTP 422).
INVALID_REMOVAL = 1300
REMOVAL_NOT_FOUND = 1301


def removal_json(removal: DataRemoval) -> dict:
    return {"ID": removal.pk, "Status": removal.status}


def _flag(value) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ApiError(INVALID_REMOVAL, "NotifyWhenCompleted must be true or false.")


class DataRemovalListView(AccountView):
    @extend_schema(operation_id="request_data_removal", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def post(self, request):
        data = body_fields(request)
        if not data:
            raise ApiError(INVALID_REMOVAL, "The request is empty: give RequestedFor.")
        try:
            removal = request_removal(
                data.get("requestedfor"),
                data.get("requestedby") or "",
                _flag(data.get("notifywhencompleted")),
            )
        except RemovalError as exc:
            raise ApiError(INVALID_REMOVAL, exc.message) from None
        return Response(removal_json(removal))


class DataRemovalDetailView(AccountView):
    @extend_schema(operation_id="get_data_removal", responses=OpenApiTypes.OBJECT)
    def get(self, request, removal_id: str):
        pk = object_id(removal_id)
        removal = DataRemoval.objects.filter(pk=pk).first() if pk else None
        if removal is None:
            raise ApiError(
                REMOVAL_NOT_FOUND,
                f"The data removal request was not found: there is none with ID "
                f"{quoted(removal_id)}.",
            )
        return Response(removal_json(removal))
