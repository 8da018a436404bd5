"""What the account endpoints (domains, sender signatures) share: the account token, pages of
``count``/``offset``, ids, and the fields of a JSON body."""

from rest_framework.views import APIView

from api.auth import AccountTokenAuthentication
from api.errors import INVALID_REQUEST, ApiError
from api.lookups import ID_RE, MAX_ID
from api.params import QueryParams
from api.text import has_control, text_problem

MAX_COUNT = 500
MAX_WINDOW = 10_000


class AccountView(APIView):
    """An endpoint of the account-level API: ``X-Postmark-Account-Token``."""

    authentication_classes = [AccountTokenAuthentication]


def page(request, error_code: int, found):
    """(TotalCount, the items of the page) for ``count`` (1 to 500) and ``offset``, both
    required as in Postmark; a bad value is ``error_code`` (HTTP 422)."""
    params = QueryParams(request, error_code)
    count = params.integer("count", 1, MAX_COUNT)
    offset = params.integer("offset", 0)
    if count is None:
        raise params.error(f"The 'count' parameter is required (1 to {MAX_COUNT}).")
    if offset is None:
        raise params.error("The 'offset' parameter is required (0 or more).")
    if count + offset > MAX_WINDOW:
        raise params.error(f"count + offset must not exceed {MAX_WINDOW}; it was {count + offset}.")
    return found.count(), list(found[offset : offset + count])


def object_id(value: str) -> int | None:
    """The id a path names, or None when no object can have it."""
    if not ID_RE.match(value or "") or int(value) > MAX_ID:
        return None
    return int(value)


def body_fields(request) -> dict:
    """The request's JSON object with lower-cased keys; no body is ``{}``."""
    data = request.data
    if data in (None, ""):
        return {}
    if not isinstance(data, dict):
        raise ApiError(INVALID_REQUEST, "The request body must be a JSON object.")
    return {str(k).lower(): v for k, v in data.items()}


def text_field(
    data: dict,
    name: str,
    error_code: int,
    max_length: int | None = None,
    too_long_code: int | None = None,
    single_line: bool = True,
) -> str | None:
    """The string field ``name`` (None when absent or null), stripped; anything else, text that
    cannot be stored, control characters in a single-line value, or more than ``max_length``
    characters is the given error."""
    value = data.get(name.lower())
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(error_code, f"{name} must be a string.")
    problem = text_problem(value)
    if problem:
        raise ApiError(error_code, f"{name} {problem}.")
    value = value.strip()
    if single_line and has_control(value):
        raise ApiError(error_code, f"{name} must not contain control characters (e.g. CR, LF).")
    if max_length is not None and len(value) > max_length:
        raise ApiError(
            too_long_code or error_code,
            f"{name} must not be longer than {max_length} characters.",
        )
    return value
