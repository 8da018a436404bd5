"""The rules for message streams and SMTP tokens, shared by the admin, commands and APIs."""

from django.db import transaction

from servers.models import DeliveryType, Server, ServerToken
from streams.models import Endpoint, MessageStream, SmtpToken, StreamType
from streams.rules import StreamError, check_new_stream_id

DEFAULT_STREAMS = (
    ("outbound", "Default Transactional Stream", StreamType.TRANSACTIONAL),
    ("inbound", "Default Inbound Stream", StreamType.INBOUND),
    ("broadcast", "Default Broadcast Stream", StreamType.BROADCASTS),
)


def check_new_stream(server: Server, stream_id: str) -> None:
    """Raise StreamError unless ``stream_id`` may be added to ``server``."""
    check_new_stream_id(stream_id, MessageStream.objects.filter(server=server))


@transaction.atomic
def create_stream(
    server: Server,
    stream_id: str,
    message_stream_type: str = StreamType.TRANSACTIONAL,
    name: str = "",
    description: str = "",
) -> MessageStream:
    # Lock the server row so that two concurrent creations cannot both pass the limit check.
    Server.objects.select_for_update().filter(pk=server.pk).first()
    if message_stream_type not in StreamType.values:
        raise StreamError(
            f"The message stream type '{message_stream_type}' is invalid: "
            f"use one of {', '.join(StreamType.values)}."
        )
    check_new_stream(server, stream_id)
    return MessageStream.objects.create(
        server=server,
        stream_id=stream_id,
        message_stream_type=message_stream_type,
        name=name or stream_id,
        description=description,
    )


def create_default_streams(server: Server) -> list[MessageStream]:
    return [
        create_stream(server, stream_id, stream_type, name)
        for stream_id, name, stream_type in DEFAULT_STREAMS
    ]


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


def get_stream(server: Server, stream_id: str) -> MessageStream:
    try:
        return MessageStream.objects.get(server=server, stream_id=stream_id)
    except MessageStream.DoesNotExist:
        raise StreamError(
            f"The stream provided: '{stream_id}' does not exist on this server.", error_code=1235
        ) from None


def sending_refusal(stream_type: str, stream_id: str, endpoint: str) -> str:
    """Why a stream of ``stream_type`` may not send through ``endpoint`` (``Endpoint``), or "".
    Inbound streams never send; the others send through the SMTP endpoint of their own type, or
    through the HTTP send API. The SMTP session and processing both ask this, so they refuse
    with the same words."""
    if stream_type == StreamType.INBOUND:
        return f"Sending is not supported for the Inbound stream '{stream_id}'."
    if endpoint == Endpoint.API:
        return ""
    wanted = StreamType.BROADCASTS if endpoint == Endpoint.BROADCAST else StreamType.TRANSACTIONAL
    if stream_type != wanted:
        other = "broadcast" if stream_type == StreamType.BROADCASTS else "transactional"
        return (
            f"The stream '{stream_id}' is a {stream_type} stream: its mail must be sent to the "
            f"{other} SMTP endpoint."
        )
    return ""


def check_smtp_token_allowed(stream: MessageStream) -> None:
    if stream.message_stream_type == StreamType.INBOUND:
        raise StreamError(
            "SMTP tokens are for sending: an inbound stream cannot have one.", error_code=1236
        )
    if stream.archived:
        raise StreamError(f"The message stream '{stream.stream_id}' is archived.", error_code=1236)


def create_smtp_token(stream: MessageStream) -> tuple[SmtpToken, str]:
    """Generate SMTP credentials for a stream; returns the token and its one-time secret."""
    check_smtp_token_allowed(stream)
    token = SmtpToken(stream=stream)
    secret = token.generate_credentials()
    token.save()
    return token, secret
