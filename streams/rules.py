"""The rules for message stream IDs, shared by the model's validation and the services."""

import re

from django.conf import settings

STREAM_ID_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
STREAM_ID_MAX_LENGTH = 30


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


def check_new_stream_id(stream_id: str, server_streams) -> None:
    """Raise StreamError unless ``stream_id`` may be added beside ``server_streams`` (the server's
    streams, as a queryset): a valid ID, not taken, and below the per-server limit."""
    validate_stream_id(stream_id)
    if server_streams.filter(stream_id=stream_id).exists():
        raise StreamError(
            f"A message stream with the ID '{stream_id}' already exists on this server."
        )
    limit = settings.MAX_STREAMS_PER_SERVER
    if server_streams.count() >= limit:
        raise StreamError(
            f"This server already has {limit} message streams, the most a server can have "
            "(archived streams count until they are purged)."
        )
