"""POST /email/bulk and GET /email/bulk/{id} (compat §14): the request is checked whole and
stored, answered at once with its ``ID`` and ``Accepted``; its items are sent by the task
``api.bulk.send`` once the request is committed (``api.bulk``). GET /email/bulk lists the
server's requests, newest first, a page at a time."""

import uuid

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api import bulk
from api.auth import ServerTokenAuthentication
from api.bounds import Bounds
from api.errors import ApiError
from api.params import QueryParams
from api.sending import client_address
from api.views.email import _token
from bounces.serializers import timestamp
from messages.models import BulkRequest

# Up to API_MAX_BULK_MESSAGES items (checked once parsed), each with To, Cc, Bcc, a model,
# metadata and headers: a few dozen values on average.
BULK_BOUNDS = Bounds(max_bytes_setting="API_MAX_BATCH_REQUEST_SIZE", max_values=1_000_000)
# GET /email/bulk: requests a page.
DEFAULT_LIST_COUNT = 50
MAX_LIST_COUNT = 500


class EmailBulkView(APIView):
    authentication_classes = [ServerTokenAuthentication]
    request_bounds = BULK_BOUNDS

    @extend_schema(
        operation_id="list_email_bulk",
        parameters=[
            OpenApiParameter("count", int, description=f"1..{MAX_LIST_COUNT}, default "
                             f"{DEFAULT_LIST_COUNT}."),
            OpenApiParameter("paginationKey", str, description="The last page's PaginationKey."),
        ],
        responses=OpenApiTypes.OBJECT,
    )  # fmt: skip
    def get(self, request):
        params = QueryParams(request, bulk.BAD_PAGINATION_KEY)
        count = params.integer("count", 1, MAX_LIST_COUNT) or DEFAULT_LIST_COUNT
        return Response(bulk.list_bulk(request.auth, count, params.get("paginationKey")))

    @extend_schema(
        operation_id="send_email_bulk", request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT
    )
    def post(self, request):
        from api.tasks import enqueue_bulk

        try:
            with transaction.atomic():
                accepted = bulk.accept_bulk(
                    request.auth,
                    request.data,
                    credential="…" + _token(request)[-4:],
                    client_address=client_address(request),
                    tls="TLS" if request.is_secure() else "",
                )
                transaction.on_commit(lambda: enqueue_bulk(accepted.id))
        except ApiError as error:
            if not hasattr(error, "errors"):
                raise
            body = {"ErrorCode": error.error_code, "Message": error.message}
            return Response({**body, "Errors": error.errors}, status=422)
        return Response(
            {
                "ID": str(accepted.id),
                "Status": accepted.status,
                "SubmittedAt": timestamp(accepted.submitted_at),
            }
        )


class EmailBulkStatusView(APIView):
    authentication_classes = [ServerTokenAuthentication]

    @extend_schema(operation_id="get_email_bulk", responses=OpenApiTypes.OBJECT)
    def get(self, request, bulk_id):
        try:
            found = (
                BulkRequest.objects.filter(server=request.auth, id=uuid.UUID(bulk_id))
                .defer("items", "content")
                .first()
            )
        except ValueError:
            found = None
        if found is None:
            raise ApiError(bulk.NOT_FOUND, "The bulk request was not found.", http_status=404)
        return Response(bulk.status_of(found))
