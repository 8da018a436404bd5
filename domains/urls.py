"""The public confirmation page of sender signatures, included at the root of the site before
the API catch-all (the token never contains "/")."""

from django.urls import re_path

from domains import views

urlpatterns = [
    re_path(r"^senders/confirm/(?P<token>[^/]+)$", views.confirm_sender, name="sender-confirm"),
]
