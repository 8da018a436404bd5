"""Public tracking endpoints: the open pixel and the click redirect (no login, no CSRF: GET only).

The rules live in ``tracking.tokens`` and ``tracking.events``; these views only read the token
and answer. A token we did not sign (forged, altered, truncated, another key or salt) is a 404,
never a redirect.
"""

import base64

from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.views.decorators.http import require_safe

from core.logcontext import about_message
from tracking import events, tokens

# A 1×1 transparent GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = "no-store, no-cache, must-revalidate, private"


def _about(message):
    """Log lines written while recording the event name the message."""
    return about_message(message.message_id, message.server_id, message.stream.stream_id)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = NO_STORE
    response["Pragma"] = "no-cache"
    response["Expires"] = "0"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@require_safe
def open_pixel(request, token: str):
    parsed = tokens.read_open_token(token)
    if parsed is None:
        raise Http404("Unknown tracking token.")
    if request.method == "GET":  # a HEAD (link checkers) is not an open
        message = events.message_for(parsed.message_id)
        if message is not None:
            with _about(message):
                events.record_open(message, parsed.recipient, request.headers.get("User-Agent", ""))
    return _no_store(HttpResponse(PIXEL_GIF, content_type="image/gif"))


@require_safe
def click(request, token: str):
    parsed = tokens.read_click_token(token)
    if parsed is None:
        raise Http404("Unknown tracking token.")
    if request.method == "GET":
        message = events.message_for(parsed.message_id)
        if message is not None:
            with _about(message):
                events.record_click(
                    message,
                    parsed.recipient,
                    parsed.url,
                    parsed.location,
                    request.headers.get("User-Agent", ""),
                )
    return _no_store(HttpResponseRedirect(parsed.url))
