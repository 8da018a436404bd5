"""Server-level operations shared by the admin, the management commands and the APIs."""

from django.db import transaction

from streams.services import create_default_streams

from .models import DeliveryType, Server, ServerToken


@transaction.atomic
def create_server(
    name: str, smtp_api_activated: bool = True, delivery_type: str = DeliveryType.SANDBOX
) -> Server:
    """A new server with one API token and the default streams outbound, inbound, broadcast."""
    server = Server.objects.create(
        name=name, smtp_api_activated=smtp_api_activated, delivery_type=delivery_type
    )
    return provision_server(server)


@transaction.atomic
def provision_server(server: Server) -> Server:
    """Give a newly saved server its first API token and its default streams."""
    ServerToken.issue(server)
    create_default_streams(server)
    return server


def set_smtp_access(server: Server, enabled: bool) -> Server:
    server.smtp_api_activated = enabled
    server.save(update_fields=["smtp_api_activated"])
    return server


def server_json(server: Server) -> dict:
    """The server in Postmark's field names."""
    return {
        "ID": server.id,
        "Name": server.name,
        "ApiTokens": server.api_tokens,
        "SmtpApiActivated": server.smtp_api_activated,
        "DeliveryType": server.delivery_type,
        "TrackOpens": server.track_opens,
        "TrackLinks": server.track_links,
        "EnableSmtpApiErrorHooks": server.enable_smtp_api_error_hooks,
        "MessageStreams": list(server.streams.values_list("stream_id", flat=True)),
    }
