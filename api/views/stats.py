"""GET /deliverystats: the server's inactive addresses and bounce counts by type (compat §3)."""

from django.db.models import Count
from django.db.models.functions import Lower
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.lookups import server_of
from bounces.models import Bounce
from bounces.types import BOUNCE_TYPES


class DeliveryStatsView(APIView):
    @extend_schema(operation_id="get_delivery_stats", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        server = server_of(request)
        rows = (
            Bounce.objects.filter(server=server)
            .order_by()
            .values("type")
            .annotate(count=Count("*"))  # COUNT(*): answered from the (server, type) index
        )
        counts = {row["type"]: row["count"] for row in rows}
        inactive = (
            Bounce.objects.filter(server=server, inactive=True)
            .order_by()
            .values(address=Lower("email"))
            .distinct()
            .count()
        )
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
