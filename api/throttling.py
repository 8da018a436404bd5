"""Request rate limits of the HTTP API: DRF throttles (``REST_FRAMEWORK["DEFAULT_THROTTLE_
CLASSES"]``), counted in a cache every web process shares (``settings.API_RATE_LIMIT_CACHE``: a
table in the project's database by default, Redis when configured), so that N gunicorn workers on
M hosts hold one limit.

- ``TokenRateThrottle``: per API token, server or account (``API_TOKEN_RATE``), counted under a
  keyed tag of the token, never the token itself;
- ``PublicTestTokenThrottle``: Postmark's public test token ``POSTMARK_API_TEST``, which needs no
  account, per client address (``API_TEST_TOKEN_RATE``; the address as DRF reads it, see
  ``NUM_PROXIES``).

Both count requests in fixed windows (``"3000/min"``: at most 3000 in each calendar minute) with
one counter per window; throttles run after authentication and before the body is read, so a
request over the rate costs neither. Over it: HTTP 429, ErrorCode 429 (Postmark's "Rate Limit
Exceeded") and a Retry-After naming the end of the window (``api.errors``). When the cache cannot
be reached the request is let through and the failure logged: a rate limit never becomes a 500.
The database cache's increment is a read and a write, so concurrent requests may each count once
where they should count twice; Redis counts exactly.
"""

import logging
import math
import time

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import BaseThrottle

from api.auth import ACCOUNT_TOKEN_HEADER, SERVER_TOKEN_HEADER, AccountPrincipal, ServerPrincipal
from core import crypto

log = logging.getLogger(__name__)
# A failing cache is logged at most this often (seconds) by each process.
FAILURE_LOG_INTERVAL = 60.0
_last_failure_logged = 0.0

PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_rate(rate: str) -> tuple[int, int] | None:
    """``"3000/min"`` → (3000, 60); None for an empty rate (no limit)."""
    if not rate:
        return None
    number, _, period = rate.partition("/")
    try:
        return int(number), PERIODS[period.strip().lower()]
    except (KeyError, ValueError):
        raise ValueError(f"A rate is '<requests>/<s|min|h|day>', not {rate!r}.") from None


class WindowThrottle(BaseThrottle):
    """At most ``rate`` requests per window for each ``subject`` (None: not counted here)."""

    scope = ""
    rate_setting = ""

    def __init__(self):
        self.wait_seconds: float | None = None

    def subject(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        rate = parse_rate(getattr(settings, self.rate_setting))
        subject = self.subject(request) if rate else None
        if subject is None:
            return True
        limit, period = rate
        now = time.time()
        window = int(now // period)
        key = f"{self.scope}:{period}:{subject}:{window}"
        try:
            count = _increment(caches[settings.API_RATE_LIMIT_CACHE], key, period)
        except Exception:
            _log_failure()
            return True
        if count <= limit:
            return True
        self.wait_seconds = max(1.0, math.ceil((window + 1) * period - now))
        return False

    def wait(self) -> float | None:
        return self.wait_seconds


def _increment(cache, key: str, period: int) -> int:
    """The counter of ``key`` after counting one more request; it expires after its window."""
    try:
        return cache.incr(key)
    except ValueError:  # the window's first request (or the counter was culled)
        if cache.add(key, 1, timeout=period + 1):
            return 1
        return cache.incr(key)


def _log_failure() -> None:
    global _last_failure_logged
    now = time.monotonic()
    if now - _last_failure_logged >= FAILURE_LOG_INTERVAL:
        _last_failure_logged = now
        log.warning("API rate limits not counted: their cache failed", exc_info=True)


class RateLimitRouter:
    """Database caches (the rate-limit counters) through their own connection, the database
    alias ``settings.API_RATE_LIMIT_CACHE`` (the same database as ``default``)."""

    def db_for_read(self, model, **hints):
        if model._meta.app_label == "django_cache":
            return settings.API_RATE_LIMIT_CACHE
        return None

    def db_for_write(self, model, **hints):
        return self.db_for_read(model, **hints)


def _token_tag(token: str) -> str:
    return crypto.tag(b"api rate limit", token, length=32)


class TokenRateThrottle(WindowThrottle):
    """Requests per API token (server or account token)."""

    scope = "token"
    rate_setting = "API_TOKEN_RATE"

    def subject(self, request) -> str | None:
        user = getattr(request, "user", None)
        if isinstance(user, ServerPrincipal) and user.server is not None:
            header = SERVER_TOKEN_HEADER
        elif isinstance(user, AccountPrincipal):
            header = ACCOUNT_TOKEN_HEADER
        else:  # no token (the schema), or the test token (PublicTestTokenThrottle)
            return None
        return _token_tag((request.headers.get(header) or "").strip())


class PublicTestTokenThrottle(WindowThrottle):
    """Requests with Postmark's public test token, per client address."""

    scope = "test"
    rate_setting = "API_TEST_TOKEN_RATE"

    def subject(self, request) -> str | None:
        user = getattr(request, "user", None)
        if isinstance(user, ServerPrincipal) and user.server is None:
            return self.get_ident(request)
        return None
