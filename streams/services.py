"""The rules for message streams and SMTP tokens, shared by the admin, commands and APIs."""

import re

from django.conf import settings
from django.db import transaction

from servers.models import Server

from .models import MessageStream, SmtpToken, StreamType

STREAM_ID_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
STREAM_ID_MAX_LENGTH = 30

DEFAULT_STREAMS = (
    ("outbound", "Default Transactional Stream", StreamType.TRANSACTIONAL),
    ("inbound", "Default Inbound Stream", StreamType.INBOUND),
    ("broadcast", "Default Broadcast Stream", StreamType.BROADCASTS),
)


class StreamError(ValueError):
    """A rejected stream operation, with the Postmark API error code that describes it."""

    def __init__(self, message: str, error_code: int = 403):
        super().__init__(message)
        self.message = message
        self.error_code = error_code


def validate_stream_id(stream_id: str) -> None:
    if not stream_id:
        raise StreamError("The message stream ID is required.")
    if len(stream_id) > STREAM_ID_MAX_LENGTH:
        raise StreamError(
            f"The message stream ID '{stream_id}' is too long: "
            f"at most {STREAM_ID_MAX_LENGTH} characters are allowed."
        )
    if stream_id.startswith("pm-"):
        raise StreamError(
            f"The message stream ID '{stream_id}' is invalid: the prefix 'pm-' is reserved."
        )
    if not STREAM_ID_RE.match(stream_id):
        raise StreamError(
            f"The message stream ID '{stream_id}' is invalid: it must start with a letter and "
            "contain only lower-case letters, digits, hyphens and underscores."
        )


def check_new_stream(server: Server, stream_id: str) -> None:
    """Raise StreamError unless ``stream_id`` may be added to ``server``."""
    validate_stream_id(stream_id)
    if MessageStream.objects.filter(server=server, stream_id=stream_id).exists():
        raise StreamError(
            f"A message stream with the ID '{stream_id}' already exists on this server."
        )
    limit = settings.MAX_STREAMS_PER_SERVER
    if MessageStream.objects.filter(server=server).count() >= limit:
        raise StreamError(
            f"This server already has {limit} message streams, the most a server can have "
            "(archived streams count until they are purged)."
        )


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


def get_stream(server: Server, stream_id: str) -> MessageStream:
    try:
        return MessageStream.objects.get(server=server, stream_id=stream_id)
    except MessageStream.DoesNotExist:
        raise StreamError(
            f"The stream provided: '{stream_id}' does not exist on this server.", error_code=1235
        ) from None


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
