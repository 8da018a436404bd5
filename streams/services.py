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
    unsubscribe_handling_type: str | None = None,
) -> MessageStream:
    # Lock the server row so that two concurrent creations cannot both pass the limit check.
    Server.objects.select_for_update().filter(pk=server.pk).first()
    if message_stream_type not in StreamType.values:
        raise StreamError(
            f"The message stream type '{message_stream_type}' is invalid: "
            f"use one of {', '.join(StreamType.values)}."
        )
    check_new_stream(server, stream_id)
    if unsubscribe_handling_type is None:
        unsubscribe_handling_type = default_unsubscribe_handling(message_stream_type)
    check_unsubscribe_handling(message_stream_type, unsubscribe_handling_type)
    return MessageStream.objects.create(
        server=server,
        stream_id=stream_id,
        message_stream_type=message_stream_type,
        name=name or stream_id,
        description=description,
        unsubscribe_handling_type=unsubscribe_handling_type,
    )


def create_default_streams(server: Server) -> list[MessageStream]:
    return [
        create_stream(server, stream_id, stream_type, name)
        for stream_id, name, stream_type in DEFAULT_STREAMS
    ]


@transaction.atomic
def create_server(
    name: str,
    smtp_api_activated: bool = True,
    delivery_type: str = DeliveryType.SANDBOX,
    **fields,
) -> Server:
    """A new server with one API token and the default streams outbound, inbound, broadcast;
    ``fields`` are other Server fields (colour, tracking, ...)."""
    server = Server.objects.create(
        name=name, smtp_api_activated=smtp_api_activated, delivery_type=delivery_type, **fields
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


# Streams every server keeps: they can be neither archived nor created again.
PERMANENT_STREAMS = ("outbound", "inbound")
UNSUBSCRIBE_HANDLING_TYPES = ("None", "Postmark", "Custom")


def default_unsubscribe_handling(message_stream_type: str) -> str:
    """Postmark's default: broadcasts get its unsubscribe handling, the others none."""
    return "Postmark" if message_stream_type == StreamType.BROADCASTS else "None"


def check_unsubscribe_handling(message_stream_type: str, value: str) -> None:
    if value not in UNSUBSCRIBE_HANDLING_TYPES:
        raise StreamError(
            f"The UnsubscribeHandlingType '{value}' is invalid: use one of "
            f"{', '.join(UNSUBSCRIBE_HANDLING_TYPES)}."
        )
    if message_stream_type != StreamType.BROADCASTS and value != "None":
        raise StreamError(
            f"Only Broadcasts streams handle unsubscribes; a {message_stream_type} stream's "
            "UnsubscribeHandlingType must be None."
        )


@transaction.atomic
def edit_stream(
    stream: MessageStream,
    *,
    name: str | None = None,
    description: str | None = None,
    unsubscribe_handling_type: str | None = None,
) -> MessageStream:
    """Change what may change of a stream (never its ID or type); None leaves a field alone."""
    if name is not None:
        if not name.strip():
            raise StreamError("The message stream name must not be empty.")
        stream.name = name.strip()[: MessageStream._meta.get_field("name").max_length]
    if description is not None:
        stream.description = description
    if unsubscribe_handling_type is not None:
        check_unsubscribe_handling(stream.message_stream_type, unsubscribe_handling_type)
        stream.unsubscribe_handling_type = unsubscribe_handling_type
    stream.save()
    return stream


class StreamCannotArchive(StreamError):
    pass


def archive_stream(stream: MessageStream, now=None) -> MessageStream:
    """Archive ``stream`` (purged ``STREAM_PURGE_DAYS`` later unless unarchived). The server's
    default transactional and inbound streams cannot be archived; archiving twice keeps the
    first date."""
    from django.utils import timezone

    if stream.stream_id in PERMANENT_STREAMS:
        raise StreamCannotArchive(
            f"The default message stream '{stream.stream_id}' cannot be archived."
        )
    if stream.archived_at is None:
        stream.archived_at = now or timezone.now()
        stream.save(update_fields=["archived_at", "updated_at"])
    return stream


def unarchive_stream(stream: MessageStream) -> MessageStream:
    if stream.archived_at is not None:
        stream.archived_at = None
        stream.save(update_fields=["archived_at", "updated_at"])
    return stream
