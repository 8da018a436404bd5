"""Request bodies bounded before they are parsed (design: "Requests are bounded before they are
parsed"): a body that is too large, too many values or too many batch items is refused while it
is read, in time linear in what was read and in memory that does not grow with the body; only a
body known to be sane reaches ``json.loads``.

- ``Bounds``: what one endpoint takes — bytes, JSON values, nesting depth and, for a batch, the
  items of its top-level array. A view names its own (``request_bounds``); every other endpoint
  takes ``DEFAULT_BOUNDS``.
- ``read_body``: refuses a body whose Content-Length is over the limit before reading a byte,
  reads the others in chunks and stops at the first chunk past a limit: a body that says it is
  smaller than it is, or says nothing, is read no further than the limit either.
- ``LenientJSONParser``: DRF's parser (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``): any body
  is read as JSON whatever its content type, within the view's bounds; an empty body is ``{}``.
- ``JsonShape``: counts, chunk by chunk, the values (each container, array item and object
  member, at any depth), the nesting depth and the items of the top-level array, skipping
  strings with one regular expression each; no value is built.

Over a limit: HTTP 413 (ErrorCode 413) for bytes and values, Postmark's ErrorCode 410 for more
than 500 batch items, 402 for nesting (compat §2, §5).
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import BaseParser

from api.errors import (
    INVALID_JSON,
    INVALID_JSON_MESSAGE,
    MAX_JSON_DEPTH,
    TOO_DEEP,
    ApiError,
    json_problem,
)

TOO_LARGE = 413
# Bytes read at a time: the most read past a limit before it is noticed.
CHUNK = 64 * 1024
# JSON values a request may hold: far more than any request of the API needs (a message with 50
# recipients, 10 metadata fields and a hundred headers and attachments holds under 1,000).
DEFAULT_MAX_VALUES = 10_000

_STRUCTURE = re.compile(rb'["\[\]{},]')
# The rest of a string after its opening quote, up to its closing quote (not included) or to the
# end of the chunk; a lone backslash at the end of the chunk is left unmatched.
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.S)
_QUOTE, _BACKSLASH, _COMMA = 0x22, 0x5C, 0x2C
_OPEN, _CLOSE, _ARRAY = (0x5B, 0x7B), (0x5D, 0x7D), 0x5B


@dataclass(frozen=True)
class Bounds:
    """What one endpoint's body may hold. ``max_bytes`` names a setting (read per request, so
    that tests and operators can change it); ``max_items`` limits the items of a top-level array
    (a batch), refused with ``too_many_items(count, exact)``."""

    max_bytes_setting: str = "API_MAX_REQUEST_SIZE"
    max_values: int = DEFAULT_MAX_VALUES
    max_items: int | None = None
    too_many_items: Callable[[int, bool], ApiError] | None = None

    @property
    def max_bytes(self) -> int:
        return getattr(settings, self.max_bytes_setting)


DEFAULT_BOUNDS = Bounds()


def too_large(limit: int) -> ApiError:
    return ApiError(
        TOO_LARGE,
        f"The request body is larger than the limit of {limit} bytes for this endpoint.",
        http_status=413,
    )


def too_many_values(limit: int) -> ApiError:
    return ApiError(
        TOO_LARGE,
        f"The request body holds more than {limit} JSON values (objects, arrays, array items "
        "and object members), the most this endpoint takes.",
        http_status=413,
    )


class JsonShape:
    """The shape of a JSON text read so far, fed chunk by chunk: ``values``, the deepest
    ``depth`` reached, and ``items``, the items of a top-level array (counted by its commas, so
    an array of n items counts n - 1 until it ends). Whether the text is valid JSON is left to
    the parser; this only needs to count what a valid text holds."""

    def __init__(self):
        self.values = 0
        self.depth = 0
        self.deepest = 0
        self.commas_at_top = 0
        self.top: int | None = None  # the first container's opening byte
        self.in_string = False
        self.escaped = False  # the chunk ended inside a string, after a backslash

    @property
    def items(self) -> int:
        """The items of the top-level array, as far as read (an empty array counts 1)."""
        return self.commas_at_top + 1 if self.top == _ARRAY else 0

    def feed(self, chunk: bytes) -> None:
        pos = self._string(chunk, 0) if self.in_string else 0
        search = _STRUCTURE.search
        while not self.in_string:
            found = search(chunk, pos)
            if found is None:
                return
            byte, pos = chunk[found.start()], found.end()
            if byte == _QUOTE:
                self.in_string = True
                pos = self._string(chunk, pos)
            elif byte == _COMMA:
                self.values += 1
                if self.depth == 1 and self.top == _ARRAY:
                    self.commas_at_top += 1
            elif byte in _OPEN:
                self.values += 1
                self.depth += 1
                self.deepest = max(self.deepest, self.depth)
                if self.top is None:
                    self.top = byte
            else:  # a closing bracket
                self.depth -= 1

    def _string(self, chunk: bytes, pos: int) -> int:
        """Skip the rest of a string from ``pos``; where scanning resumes after it."""
        if self.escaped:
            if pos >= len(chunk):
                return pos
            self.escaped = False
            pos += 1  # the character the backslash escapes
        end = _STRING_REST.match(chunk, pos).end()
        if end == len(chunk):
            return end  # the string goes on in the next chunk
        if chunk[end] == _BACKSLASH:  # a backslash at the very end of the chunk
            self.escaped = True
            return len(chunk)
        self.in_string = False
        return end + 1


def read_body(stream, content_length: int | None, bounds: Bounds) -> bytearray:
    """The request body, read through ``stream`` within ``bounds``, or ApiError. The body's
    shape is known before it is returned: at most ``bounds.max_values`` values, nested at most
    ``MAX_JSON_DEPTH`` deep, at most ``bounds.max_items`` items in a top-level array."""
    limit = bounds.max_bytes
    if content_length is not None and content_length > limit:
        raise too_large(limit)
    shape = JsonShape()
    body = bytearray()
    while True:
        chunk = stream.read(min(CHUNK, limit + 1 - len(body)))
        if not chunk:
            break
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
        shape.feed(chunk)
        ended = content_length is not None and len(body) >= content_length
        _check(shape, bounds, ended)
        if ended:
            break
    _check(shape, bounds, ended=True)
    return body


def _check(shape: JsonShape, bounds: Bounds, ended: bool) -> None:
    if shape.deepest > MAX_JSON_DEPTH:
        raise ApiError(INVALID_JSON, f"{INVALID_JSON_MESSAGE} {TOO_DEEP}")
    if bounds.max_items is not None and shape.items > bounds.max_items:
        raise bounds.too_many_items(shape.items, ended)
    if shape.values > bounds.max_values:
        raise too_many_values(bounds.max_values)


class LenientJSONParser(BaseParser):
    """Parses any request body as JSON, read within the view's ``request_bounds``. An empty body
    is ``{}``; anything else that is not JSON (or that ``json_problem`` refuses) is Postmark's
    error 402."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        context = parser_context or {}
        bounds = getattr(context.get("view"), "request_bounds", DEFAULT_BOUNDS)
        request = context.get("request")
        try:
            content_length = int(request.META.get("CONTENT_LENGTH")) if request else None
        except (TypeError, ValueError):
            content_length = None
        raw = read_body(stream, content_length, bounds) if stream is not None else b""
        if not raw or raw.isspace():
            return {}
        try:
            text = raw.decode("utf-8-sig")
            del raw
            data = json.loads(text)
        except (UnicodeDecodeError, ValueError):
            raise exceptions.ParseError(INVALID_JSON_MESSAGE) from None
        except RecursionError:  # nested deeper than Python's parser can go
            raise ApiError(INVALID_JSON, f"{INVALID_JSON_MESSAGE} {TOO_DEEP}") from None
        problem = json_problem(data)
        if problem:
            raise ApiError(INVALID_JSON, f"{INVALID_JSON_MESSAGE} {problem}")
        return data
