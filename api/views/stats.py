"""GET /deliverystats: the server's inactive addresses and bounce counts by type (compat §3)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.lookups import server_of
from bounces.types import BOUNCE_TYPES
from stats.bounces import bounce_counts_by_type, inactive_addresses


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
