"""The API's canonical paths (lower case, no trailing slash). ``bounces.routing.dispatch`` maps
every spelling clients use onto these (compat §2), so this URLconf is never the root one."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView

from . import api


class SchemaView(SpectacularJSONAPIView):
    authentication_classes = []
    permission_classes = []
    urlconf = "bounces.urls"


urlpatterns = [
    path("deliverystats", api.DeliveryStatsView.as_view(), name="deliverystats"),
    path("bounces", api.BounceListView.as_view(), name="bounces"),
    path("bounces/tags", api.BounceTagsView.as_view(), name="bounce-tags"),
    path("bounces/<str:bounce_id>", api.BounceDetailView.as_view(), name="bounce"),
    path("bounces/<str:bounce_id>/dump", api.BounceDumpView.as_view(), name="bounce-dump"),
    path(
        "bounces/<str:bounce_id>/activate",
        api.BounceActivateView.as_view(),
        name="bounce-activate",
    ),
    path(
        "message-streams/<str:stream_id>/suppressions/dump",
        api.SuppressionDumpView.as_view(),
        name="suppressions-dump",
    ),
    path(
        "message-streams/<str:stream_id>/suppressions",
        api.SuppressionCreateView.as_view(),
        name="suppressions-create",
    ),
    path(
        "message-streams/<str:stream_id>/suppressions/delete",
        api.SuppressionDeleteView.as_view(),
        name="suppressions-delete",
    ),
    # Any letter case: bounces.routing lower-cases only the words it knows.
    re_path(r"^(?i:webhooks)$", api.WebhookListView.as_view(), name="webhooks"),
    re_path(
        r"^(?i:webhooks)/(?P<webhook_id>[^/]+)$", api.WebhookDetailView.as_view(), name="webhook"
    ),
    path("openapi.json", SchemaView.as_view(), name="openapi"),
]
