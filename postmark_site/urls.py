from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from api import routing
from postmark_site import health_views

urlpatterns = [
    # Health and metrics: no authentication, never through the API's routing.
    path("healthz", health_views.healthz, name="healthz"),
    path("readyz", health_views.readyz, name="readyz"),
    path("metrics", health_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("", include("tracking.urls")),  # open and click tracking: /o/<token>, /c/<token>
    path("", include("domains.urls")),  # sender confirmation page: /senders/confirm/<token>
    # Everything else is the Postmark-compatible HTTP API, at the root of the host (compat §2);
    # api.routing normalises slashes and letter case itself, so API paths never redirect.
    re_path(r"^(?!admin(?:/|$)|static(?:/|$))", routing.dispatch, name="api"),
]

# Errors in Postmark's {"ErrorCode", "Message"} shape for API paths, Django's pages elsewhere.
handler400 = "api.errors.handler400"
handler404 = "api.errors.handler404"
handler500 = "api.errors.handler500"
