from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from bounces import routing

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("", include("streams.urls")),  # open and click tracking: /o/<token>, /c/<token>
    # Everything else is the Postmark-compatible HTTP API, at the root of the host (compat §2);
    # bounces.routing normalises slashes and letter case itself, so API paths never redirect.
    re_path(r"^(?!admin(?:/|$)|static(?:/|$))", routing.dispatch, name="api"),
]

# Errors in Postmark's {"ErrorCode", "Message"} shape for API paths, Django's pages elsewhere.
handler400 = "bounces.errors.handler400"
handler404 = "bounces.errors.handler404"
handler500 = "bounces.errors.handler500"
