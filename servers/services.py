"""Server-level operations shared by the admin, the management commands and the APIs."""

from servers.models import Server


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
