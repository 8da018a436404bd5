"""What a request names, looked up within the server of its token: every query of the API starts
here, so a token never sees another server's data."""

import re

from api.errors import (
    STREAM_NOT_FOUND,
    ApiError,
)
from api.text import quoted, text_problem
from streams.models import MessageStream
from streams.services import StreamError, get_stream

DEFAULT_STREAM = "outbound"
ID_RE = re.compile(r"^[0-9]{1,19}$")
MAX_ID = 2**63 - 1
MAX_STREAM_ID_LENGTH = MessageStream._meta.get_field("stream_id").max_length


def server_of(request):
    """The server of the request's token (``ServerTokenAuthentication`` sets ``request.auth``)."""
    return request.auth


def stream_of(request, stream_id: str):
    """The server's stream ``stream_id``, or the API error for an unknown or unusable one. An id
    no stream can have (not text, too long, NUL) is not looked up: it does not exist."""
    if (
        not isinstance(stream_id, str)
        or len(stream_id) > MAX_STREAM_ID_LENGTH
        or text_problem(stream_id)
    ):
        raise ApiError(
            STREAM_NOT_FOUND,
            f"The stream provided: '{quoted(stream_id)}' does not exist on this server.",
        )
    try:
        return get_stream(server_of(request), stream_id)
    except StreamError as exc:
        raise ApiError(exc.error_code or STREAM_NOT_FOUND, exc.message) from None
