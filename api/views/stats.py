"""GET /deliverystats: the server's inactive addresses and bounce counts by type (compat §3); the
stats API, /stats/outbound and its series (compat §11), answered by ``stats.series`` from the daily
roll-ups."""

from datetime import timedelta

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApiError
from api.lookups import MAX_STREAM_ID_LENGTH, server_of
from api.params import EASTERN, QueryParams
from api.text import quoted
from bounces.types import BOUNCE_TYPES
from stats.bounces import bounce_counts_by_type, inactive_addresses
from stats.series import SERIES, Filters, overview, series
from streams.models import MessageStream


class DeliveryStatsView(APIView):
    @extend_schema(operation_id="get_delivery_stats", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        server = server_of(request)
        counts = bounce_counts_by_type(server)
        inactive = inactive_addresses(server)
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


# --- /stats/outbound (compat §11) -----------------------------------------------------------------

STATS_QUERY = 900
SERIES_NAMES = tuple(SERIES)  # /stats/outbound/<name>
STATS_STREAM_NOT_FOUND = 1226
_STATS_PARAMETERS = [
    OpenApiParameter("tag", str),
    OpenApiParameter("fromdate", str, description="YYYY-MM-DD, inclusive, US Eastern."),
    OpenApiParameter("todate", str, description="YYYY-MM-DD, inclusive, US Eastern."),
    OpenApiParameter("messagestream", str, description="Stream ID; default: every stream."),
]


def stats_filters(request) -> Filters:
    """The request's filters: names in any case (postmark.js sends ``fromDate``), days in US
    Eastern time (a date and time names its day)."""
    params = QueryParams(request, STATS_QUERY)
    server = server_of(request)
    stream = params.get("messagestream")
    if stream is not None and not (
        len(stream) <= MAX_STREAM_ID_LENGTH
        and MessageStream.objects.filter(server=server, stream_id=stream).exists()
    ):
        raise ApiError(
            STATS_STREAM_NOT_FOUND,
            f"The stream provided: '{quoted(stream)}' does not exist on this server.",
        )
    since, until = params.moment("fromdate"), params.moment("todate")
    return Filters(
        server_id=server.pk,
        stream=stream,
        tag=params.get("tag"),
        first=since[0].astimezone(EASTERN).date() if since else None,
        last=(until[1] - timedelta(microseconds=1)).astimezone(EASTERN).date() if until else None,
    )


class OutboundOverviewView(APIView):
    @extend_schema(
        operation_id="get_outbound_overview",
        parameters=_STATS_PARAMETERS,
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        return Response(overview(stats_filters(request)))


class OutboundSeriesView(APIView):
    """``/stats/outbound/<series>``: the series named in the URLconf's ``series`` argument."""

    series = ""

    @extend_schema(parameters=_STATS_PARAMETERS, responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(series(self.series, stats_filters(request)))
