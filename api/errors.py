"""Postmark's wire conventions for the HTTP API: JSON in and out, and every error as
``{"ErrorCode": <int>, "Message": "<text>"}`` (compat §2); DRF's ``{"detail": ...}`` never leaks.

- ``PostmarkJSONRenderer``: ``application/json; charset=utf-8``.
- ``LenientNegotiation``: a body is read as JSON whatever its content type (or none), by
  ``api.bounds.LenientJSONParser``; an ``Accept`` header that matches nothing still gets JSON.
- ``json_problem``: a body nested deeper than ``MAX_JSON_DEPTH``, or holding a lone surrogate or a
  non-finite number, is invalid JSON (402).
- ``exception_handler``: DRF's exception handler (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``).
- ``handler400``/``handler404``/``handler500``: Django-level handlers (root URLconf) that answer in
  Postmark's shape for API paths and fall back to Django's pages for the admin and static files.
"""

import logging
import math

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from api.text import has_surrogate

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

# Postmark's error codes used by this API (compat §2); HTTP-level failures that Postmark gives no
# code of its own (unknown path, wrong method, ...) carry their HTTP status as ErrorCode.
BAD_TOKEN = 10
INVALID_JSON = 402
INVALID_REQUEST = 403
BOUNCE_QUERY = 1000
BOUNCE_NOT_FOUND = 1001
CANNOT_ACTIVATE = 1003
STREAM_NOT_FOUND = 1235
RATE_LIMITED = 429  # Postmark's "Rate Limit Exceeded"

MISSING_TOKEN_MESSAGE = (
    "No Account or Server API tokens were supplied in the HTTP headers. Please add a header for "
    "either X-Postmark-Server-Token or X-Postmark-Account-Token."
)
BAD_TOKEN_MESSAGE = "Request does not contain a valid Server token."
BAD_ACCOUNT_TOKEN_MESSAGE = "Request does not contain a valid Account token."
INVALID_JSON_MESSAGE = "Received invalid JSON input."
# Postmark's bodies nest three or four levels; far deeper input is refused before any view walks it.
MAX_JSON_DEPTH = 32


class ApiError(exceptions.APIException):
    """An API failure with Postmark's ErrorCode; HTTP 422 unless said otherwise."""

    def __init__(self, error_code: int, message: str, http_status: int = 422):
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status_code = http_status


def error_response(error_code: int, message: str, http_status: int) -> JsonResponse:
    """A plain Django response in Postmark's error shape (for code outside DRF views)."""
    return JsonResponse(
        {"ErrorCode": error_code, "Message": message},
        status=http_status,
        content_type=JSON_CONTENT_TYPE,
        json_dumps_params={"separators": (",", ":")},
    )


class PostmarkJSONRenderer(JSONRenderer):
    charset = "utf-8"


TOO_DEEP = f"Objects and arrays may be nested at most {MAX_JSON_DEPTH} levels deep."
_LONE_SURROGATE = (
    "A string holds a lone UTF-16 surrogate (\\ud800 to \\udfff), which is not a character."
)


def json_problem(data) -> str | None:
    """Why parsed JSON cannot be taken although Python's parser read it, or None: nesting deeper
    than ``MAX_JSON_DEPTH``, a lone UTF-16 surrogate (``"\\ud800"``: not a character, so it cannot
    be stored or even sent back), or a number that is not finite (``NaN``, ``1e999``)."""
    pending = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return TOO_DEEP
            if isinstance(value, dict):
                for key in value:
                    if has_surrogate(key):
                        return _LONE_SURROGATE
                pending.extend((item, depth + 1) for item in value.values())
            else:
                pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            if has_surrogate(value):
                return _LONE_SURROGATE
        elif isinstance(value, float) and not math.isfinite(value):
            return "Numbers must be finite (NaN, Infinity and 1e999 are not)."
    return None


class LenientNegotiation(DefaultContentNegotiation):
    """Always the first parser (any content type is read as JSON); the first renderer when the
    ``Accept`` header matches none."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except (exceptions.NotAcceptable, exceptions.NotFound):
            return renderers[0], renderers[0].media_type


def _error_for(exc) -> tuple[int, str, int] | None:
    """(ErrorCode, Message, HTTP status) for an exception DRF knows, or None."""
    if isinstance(exc, ApiError):
        return exc.error_code, exc.message, exc.status_code
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        detail = str(exc.detail) if exc.detail else BAD_TOKEN_MESSAGE
        if isinstance(exc, exceptions.NotAuthenticated):
            detail = MISSING_TOKEN_MESSAGE
        return BAD_TOKEN, detail, status.HTTP_401_UNAUTHORIZED
    if isinstance(exc, exceptions.ParseError):
        return INVALID_JSON, INVALID_JSON_MESSAGE, status.HTTP_422_UNPROCESSABLE_ENTITY
    if isinstance(exc, exceptions.Throttled):
        return RATE_LIMITED, throttled_message(exc.wait), status.HTTP_429_TOO_MANY_REQUESTS
    if isinstance(exc, exceptions.MethodNotAllowed):
        return 405, _flatten(exc.detail), status.HTTP_405_METHOD_NOT_ALLOWED
    if isinstance(exc, exceptions.ValidationError):
        return INVALID_REQUEST, _flatten(exc.detail), status.HTTP_422_UNPROCESSABLE_ENTITY
    if isinstance(exc, exceptions.PermissionDenied | PermissionDenied):
        return BAD_TOKEN, BAD_TOKEN_MESSAGE, status.HTTP_401_UNAUTHORIZED
    if isinstance(exc, Http404):
        return 404, "Not found.", status.HTTP_404_NOT_FOUND
    if isinstance(exc, exceptions.APIException):
        return exc.status_code, _flatten(exc.detail), exc.status_code
    return None


def throttled_message(wait: float | None) -> str:
    after = f" Try again in {max(1, math.ceil(wait))} second(s)." if wait is not None else ""
    return f"Rate limit exceeded: too many requests with this token or from this address.{after}"


def _token_header(context) -> str:
    """The token header the view asks for (the account endpoints take another one)."""
    view, request = context.get("view"), context.get("request")
    if view is not None and request is not None:
        return view.get_authenticate_header(request) or "X-Postmark-Server-Token"
    return "X-Postmark-Server-Token"


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return " ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(v) for v in detail)
    return str(detail)


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER. Unexpected exceptions return None: DRF re-raises them, Django
    logs the traceback and ``handler500`` answers in Postmark's shape."""
    found = _error_for(exc)
    if found is None:
        return None
    error_code, message, http_status = found

    response = Response({"ErrorCode": error_code, "Message": message}, status=http_status)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        response["Retry-After"] = str(max(1, math.ceil(exc.wait)))
    if http_status == 401:
        response["WWW-Authenticate"] = _token_header(context)
    if isinstance(exc, exceptions.MethodNotAllowed):
        view = context.get("view")
        if view is not None:
            response["Allow"] = ", ".join(view.allowed_methods)
    return response


def is_api_path(path: str) -> bool:
    """True for every path of the API, i.e. everything but the admin and the static files."""
    lowered = path.lstrip("/").lower()
    static = (settings.STATIC_URL or "static/").strip("/").lower()
    return not any(lowered == p or lowered.startswith(p + "/") for p in ("admin", static))


def not_found_response(request) -> JsonResponse:
    return error_response(
        404, f"Not found: there is no API endpoint at '{request.path}'.", status.HTTP_404_NOT_FOUND
    )


def handler400(request, exception=None):
    if is_api_path(request.path):
        return error_response(400, "Bad request.", status.HTTP_400_BAD_REQUEST)
    return defaults.bad_request(request, exception)


def handler404(request, exception=None):
    if is_api_path(request.path):
        return not_found_response(request)
    return defaults.page_not_found(request, exception)


def handler500(request):
    if is_api_path(request.path):
        return error_response(
            500,
            "Internal server error: the request could not be completed. It has been logged.",
            status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    return defaults.server_error(request)
