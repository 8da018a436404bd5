"""Liberal query-parameter parsing (compat §2): names in any case, an empty value means "no
filter", booleans in any case, Postmark's dates read as US Eastern time when naive.

Every value a view receives can be stored and looked up (``api.text``: no NUL, no lone
surrogate), and every date names a period that the database and Python can both represent; any
other value is the view's query error (HTTP 422), never a database error."""

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from api.errors import ApiError
from api.text import quoted, text_problem

EASTERN = ZoneInfo("America/New_York")

_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_TIME_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{1,2})(?::(?P<m>\d{2})(?::(?P<s>\d{2})"
    r"(?P<frac>[.,]\d+)?)?)?(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?$",
    re.ASCII,
)
# "+02:00" in an unencoded query string arrives as " 02:00".
_LOST_PLUS_RE = re.compile(
    r"^(.*\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}(?::?\d{2})?)$", re.ASCII
)
# The longest date parameter read (2021-01-01T12:00:00.1234567-05:00 is 33 characters).
MAX_DATE_LENGTH = 64

TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}


class QueryParams:
    """Query parameters with case-insensitive names; empty values read as absent."""

    def __init__(self, request, error_code: int):
        self.values = {key.lower(): value for key, value in request.query_params.items()}
        self.error_code = error_code

    def error(self, message: str) -> ApiError:
        return ApiError(self.error_code, message)

    def get(self, name: str) -> str | None:
        value = self.values.get(name.lower())
        if value is None:
            return None
        value = value.strip()
        if not value:
            return None
        problem = text_problem(value)
        if problem:
            raise self.error(f"The '{name}' parameter {problem}.")
        return value

    def integer(self, name: str, minimum: int, maximum: int | None = None) -> int | None:
        raw = self.get(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise self.error(
                f"The '{name}' parameter must be a whole number, not '{quoted(raw)}'."
            ) from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise self.error(f"The '{name}' parameter must be {bounds}; it was {value}.")
        return value

    def boolean(self, name: str) -> bool | None:
        raw = self.get(name)
        if raw is None:
            return None
        if raw.lower() in TRUE_WORDS:
            return True
        if raw.lower() in FALSE_WORDS:
            return False
        raise self.error(f"The '{name}' parameter must be true or false, not '{quoted(raw)}'.")

    def choice(self, name: str, choices) -> str | None:
        """One of ``choices``, matched in any letter case; returned as spelled in ``choices``."""
        raw = self.get(name)
        if raw is None:
            return None
        by_lower = {c.lower(): c for c in choices}
        if raw.lower() not in by_lower:
            raise self.error(
                f"The '{name}' parameter '{quoted(raw)}' is not valid. Use one of: "
                f"{', '.join(choices)}."
            )
        return by_lower[raw.lower()]

    def moment(self, name: str) -> tuple[datetime, datetime] | None:
        """The period a date parameter names: (first instant, first instant after it).

        ``2021-01-01`` is that whole day, ``2021-01-01T12:00:00`` that whole second; naive values
        are US Eastern time, as Postmark reads them. A ``fromdate`` starts at the first instant,
        a ``todate`` ends after the last (both inclusive)."""
        raw = self.get(name)
        if raw is None:
            return None
        try:
            return parse_period(raw)
        except DateOutOfRange:
            raise self.error(
                f"The '{name}' parameter '{quoted(raw)}' is out of range: the period it names "
                "must lie within the years 1 to 9999 (UTC)."
            ) from None
        except ValueError:
            raise self.error(
                f"The '{name}' parameter '{quoted(raw)}' is not a date. Use e.g. 2021-01-01 or "
                "2021-01-01T12:00:00 (US Eastern time unless an offset such as Z or -05:00 is "
                "given)."
            ) from None


class DateOutOfRange(ValueError):
    """A date whose period does not fit the calendar Python and the databases share."""


def parse_period(raw: str) -> tuple[datetime, datetime]:
    """(first instant, first instant after) of the period ``raw`` names, in UTC; ``ValueError``
    when it is not a date, ``DateOutOfRange`` when its period (in UTC) leaves years 1 to 9999."""
    raw = raw.strip()
    if len(raw) > MAX_DATE_LENGTH:
        raise ValueError(raw)
    raw = _LOST_PLUS_RE.sub(r"\1+\2", raw)
    if raw.startswith("0000-"):
        raise DateOutOfRange(raw)
    try:
        start, end = _period(raw)
        # In UTC, where the databases compare them (PostgreSQL also refuses offsets beyond
        # ±15:59 that Python accepts); both ends must exist there.
        return start.astimezone(UTC), end.astimezone(UTC)
    except OverflowError:
        raise DateOutOfRange(raw) from None


def _period(raw: str) -> tuple[datetime, datetime]:
    if _DAY_RE.match(raw):
        day = date.fromisoformat(raw)
        start = datetime(day.year, day.month, day.day, tzinfo=EASTERN)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=EASTERN)
        return start, end
    match = _TIME_RE.match(raw)
    if not match:
        raise ValueError(raw)
    if match["frac"]:
        unit = timedelta(microseconds=1)
    elif match["s"]:
        unit = timedelta(seconds=1)
    elif match["m"]:
        unit = timedelta(minutes=1)
    else:
        unit = timedelta(hours=1)
    frac = (match["frac"] or "").replace(",", ".")[:7]
    normalised = (
        f"{match['date']}T{int(match['h']):02d}:{match['m'] or '00'}:{match['s'] or '00'}{frac}"
    )
    value = datetime.fromisoformat(normalised)
    tz = match["tz"]
    if tz:
        value = datetime.fromisoformat(normalised + ("+00:00" if tz in "Zz" else _offset(tz)))
    else:
        value = value.replace(tzinfo=EASTERN)
    return value, value + unit


def _offset(tz: str) -> str:
    digits = tz[1:].replace(":", "")
    return f"{tz[0]}{digits[:2]}:{digits[2:4] or '00'}"
