"""The web app's access log: one line per request through the app's own logging (logger
``postmark_site.access``), so it takes LOG_FORMAT like every other line — JSON objects with
``LOG_FORMAT=json`` — under gunicorn and the development server alike.

Fields: method, path, status, bytes, milliseconds, client address, user agent. The query string
is left out (API filters hold recipients' addresses), and so is the secret part of a sender
confirmation link; tracking links carry sealed tokens, nothing readable.
"""

import logging
import re
import time

log = logging.getLogger("postmark_site.access")

_SECRET_PATHS = re.compile(r"^(/senders/confirm/)[^/]+")


def shown_path(path: str) -> str:
    return _SECRET_PATHS.sub(r"\1…", path)[:500]


class AccessLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        response = self.get_response(request)
        elapsed = (time.monotonic() - started) * 1000
        size = len(response.content) if not getattr(response, "streaming", False) else -1
        fields = {
            "method": request.method,
            "path": shown_path(request.path),
            "status": response.status_code,
            "bytes": size,
            "ms": round(elapsed, 1),
            "client": request.META.get("REMOTE_ADDR", ""),
            "user_agent": request.headers.get("User-Agent", "")[:200],
        }
        log.info(
            '%s %s %s %s %.1fms client=%s ua="%s"',
            fields["method"],
            fields["path"],
            fields["status"],
            fields["bytes"],
            elapsed,
            fields["client"],
            fields["user_agent"],
            extra=fields,
        )
        return response
