"""Liberal routing for the HTTP API (compat §2): ``/bounces``, ``/bounces/``, ``//Bounces//1/``
and ``/deliveryStats`` all reach the same view, and nothing redirects (a redirected POST would
lose its body).

The root URLconf sends every path outside the admin and the static files to ``dispatch``, which
normalises the path — repeated slashes collapsed, trailing slash dropped, the API's fixed words
lower-cased (never ids, stream ids or other values) — and resolves it in ``bounces.urls``. An
unknown path is a 404 in Postmark's error shape. Being a view rather than a middleware, it needs
no change to settings.MIDDLEWARE and cannot touch the admin.
"""

from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt

from api.errors import not_found_response

API_URLCONF = "api.urls"
FIXED_WORDS = frozenset(
    {
        "deliverystats",
        "bounces",
        "tags",
        "dump",
        "activate",
        "message-streams",
        "suppressions",
        "delete",
        "email",
        "batch",
        "bulk",
        "openapi.json",
        "messages",
        "outbound",
        "details",
        "opens",
        "clicks",
        "archive",
        "unarchive",
        # Account level: domains and sender signatures.
        "domains",
        "verifydkim",
        "verifyreturnpath",
        "verifyspf",
        "rotatedkim",
        "senders",
        "resend",
        "requestnewdkim",
        # Templates.
        "templates",
        "validate",
        "push",
        "withtemplate",
        "batchwithtemplates",
        # Server and servers, data removals.
        "server",
        "servers",
        "data-removals",
        # The stats API.
        "stats",
        "sends",
        "spam",
        "tracked",
        "platforms",
        "emailclients",
        "readtimes",
        "browserfamilies",
        "location",
        "triggers",
    }
)
# Words of one resource only, lowered only under it (so that e.g. a template alias "Retry"
# stays as written).
SCOPED_WORDS = {
    "messages": frozenset({"inbound", "bypass", "retry"}),
    "triggers": frozenset({"inboundrules"}),
}


def canonical_path(path: str) -> str:
    segments = [s for s in path.split("/") if s]
    scoped = SCOPED_WORDS.get(segments[0].lower(), frozenset()) if segments else frozenset()
    out = []
    for i, segment in enumerate(segments):
        is_stream_id = i > 0 and segments[i - 1].lower() == "message-streams"
        lowered = segment.lower()
        fixed = lowered in FIXED_WORDS or lowered in scoped
        out.append(lowered if fixed and not is_stream_id else segment)
    return "/" + "/".join(out)


@csrf_exempt  # token-authenticated API: no cookies, no CSRF
def dispatch(request, *args, **kwargs):
    path = canonical_path(request.path_info)
    try:
        match = resolve(path, urlconf=API_URLCONF)
    except Resolver404:
        return not_found_response(request)
    request.path_info = path
    request.resolver_match = match
    return match.func(request, *match.args, **match.kwargs)
