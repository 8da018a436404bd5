"""A URLconf with only the tracking endpoints at the root, for the tracking tests."""

from django.urls import include, path

urlpatterns = [path("", include("tracking.urls"))]
