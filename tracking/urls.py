"""Public tracking endpoints, included at the root of the site: ``/o/<token>`` (open pixel; a
suffix such as ``.gif`` is tolerated) and ``/c/<token>`` (click redirect).

Include these before the API catch-all in the root URLconf. The token never contains "/", and no
pattern matches with a trailing slash, so CommonMiddleware never turns a 404 into a redirect."""

from django.urls import re_path

from tracking import views

urlpatterns = [
    re_path(r"^o/(?P<token>[^/]+)$", views.open_pixel, name="tracking-open"),
    re_path(r"^c/(?P<token>[^/]+)$", views.click, name="tracking-click"),
]
