"""The dashboard's admin pages, mounted inside the admin site (namespace ``admin``) by
``servers.admin``, ahead of the model admins' own URLs. Every view goes through
``site.admin_view``: staff login required, never cached, CSRF-checked on POST."""

from django.urls import path

from . import views


def admin_urlpatterns(site):
    def wrap(view):
        return site.admin_view(view)

    return [
        path("dashboard/", wrap(views.dashboard), name="dashboard"),
        path("servers/server/<int:object_id>/smtp/", wrap(views.server_smtp_switch),
             name="servers_server_smtp"),
        path("streams/messagestream/<int:object_id>/tokens/<int:token_id>/revoke/",
             wrap(views.stream_token_revoke), name="streams_messagestream_token_revoke"),
        path("streams/messagestream/<int:object_id>/suppressions/",
             wrap(views.stream_suppressions), name="streams_messagestream_suppressions"),
        path("streams/messagestream/<int:object_id>/suppressions/add/",
             wrap(views.stream_suppression_add), name="streams_messagestream_suppression_add"),
        path("streams/messagestream/<int:object_id>/suppressions/remove/",
             wrap(views.stream_suppression_remove),
             name="streams_messagestream_suppression_remove"),
        path("streams/messagestream/<int:object_id>/suppressions.csv",
             wrap(views.stream_suppressions_csv), name="streams_messagestream_suppressions_csv"),
        path("bounces/bounce/<int:object_id>/dump.eml", wrap(views.bounce_dump),
             name="bounces_bounce_dump"),
        path("bounces/bounce/<int:object_id>/reactivate/", wrap(views.bounce_reactivate),
             name="bounces_bounce_reactivate"),
        path("streams/outboundmessage/<int:object_id>/source.eml", wrap(views.message_source),
             name="streams_outboundmessage_source"),
    ]  # fmt: skip
