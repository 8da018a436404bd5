"""The stats API's figures (compat §11), summed from the daily roll-ups (``stats.rollup``): one
query over ``DailyCount`` per request, reading one row per day and figure of the request's scope
(a stream and tag, or the sums over all of them), whatever the number of messages or tags.

``overview`` is ``/stats/outbound``; ``series(name, …)`` is ``/stats/outbound/<name>``: the days
with data (oldest first), each with every fixed key of the series (0 included) and the non-zero
dynamic keys (client names, …), and the same keys summed over the days.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from django.db.models import Sum

from bounces.types import BOUNCE_TYPES, SPAM_COMPLAINT
from stats.models import DailyCount


@dataclass(frozen=True)
class Filters:
    """What a stats request asks for: a server's figures, of one stream and tag or all, over
    the Eastern days ``first``..``last`` (either end open when None)."""

    server_id: int
    stream: str | None = None
    tag: str | None = None
    first: date | None = None
    last: date | None = None


@dataclass(frozen=True)
class Series:
    metric: str
    fixed: dict[str, str]  # key in the roll-ups → name in the response, always present
    dynamic: bool = False  # other keys appear under their own name, when not zero
    hidden: frozenset = frozenset()  # keys never shown


SERIES = {
    "sends": Series("sent", {"": "Sent"}),
    "bounces": Series(
        "bounce",
        {t: t for t in ("HardBounce", "SoftBounce", "Transient", "SMTPApiError")},
        dynamic=True,
        hidden=frozenset({SPAM_COMPLAINT}),
    ),
    "spam": Series("bounce", {SPAM_COMPLAINT: SPAM_COMPLAINT}),
    "tracked": Series("tracked", {"": "Tracked"}),
    "opens": Series("opens", {"": "Opens", "unique": "Unique"}),
    "opens/platforms": Series(
        "open_platform", {p: p for p in ("Desktop", "Mobile", "WebMail", "Unknown")}
    ),
    "opens/emailclients": Series("open_client", {}, dynamic=True),
    "opens/readtimes": Series("read_time", {}, dynamic=True),  # read times are not recorded
    "clicks": Series("clicks", {"": "Clicks", "unique": "Unique"}),
    "clicks/browserfamilies": Series("click_browser", {}, dynamic=True),
    "clicks/platforms": Series(
        "click_platform", {p: p for p in ("Desktop", "Mobile", "Unknown")}, dynamic=True
    ),
    "clicks/location": Series("click_location", {p: p for p in ("HTML", "Text")}),
}

# Bounce types counted in ``Bounced`` (and its rate): not delays, SMTP API errors (never sent)
# or spam complaints (counted apart).
BOUNCED_TYPES = frozenset(
    name for name, t in BOUNCE_TYPES.items() if t.counts_in_bounce_rate and name != SPAM_COMPLAINT
)


def _rows(filters: Filters, metrics, by_day: bool):
    # A stream or tag not asked for reads the rows summed over all of them (NULL): every filter
    # of the (server, stream, tag, metric, day) index is given, and a day has one row per figure.
    scope = {"stream__isnull": True} if filters.stream is None else {"stream": filters.stream}
    scope.update({"tag__isnull": True} if filters.tag is None else {"tag": filters.tag})
    rows = DailyCount.objects.filter(server_id=filters.server_id, **scope, metric__in=list(metrics))
    if filters.first is not None:
        rows = rows.filter(day__gte=filters.first)
    if filters.last is not None:
        rows = rows.filter(day__lte=filters.last)
    columns = ("day", "metric", "key") if by_day else ("metric", "key")
    return rows.values_list(*columns).annotate(n=Sum("count")).order_by()


def series(name: str, filters: Filters) -> dict:
    """The response of ``/stats/outbound/<name>``: {"Days": [...], <totals>}."""
    spec = SERIES[name]
    days: dict[date, dict[str, int]] = defaultdict(dict)
    for day, _metric, key, n in _rows(filters, [spec.metric], by_day=True):
        if not n or key in spec.hidden or (key not in spec.fixed and not spec.dynamic):
            continue
        label = spec.fixed.get(key, key)
        days[day][label] = days[day].get(label, 0) + n
    totals = dict.fromkeys(spec.fixed.values(), 0)
    out_days = []
    for day in sorted(days):
        values = {**dict.fromkeys(spec.fixed.values(), 0), **days[day]}
        out_days.append({"Date": day.isoformat(), **values})
        for label, n in values.items():
            totals[label] = totals.get(label, 0) + n
    return {"Days": out_days, **totals}


def _rate(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 3) if whole else 0.0


def overview(filters: Filters) -> dict:
    """The response of ``/stats/outbound``."""
    metrics = ("sent", "bounce", "tracked", "opens", "clicks")
    found = {(m, k): n or 0 for m, k, n in _rows(filters, metrics, by_day=False)}
    bounces = {k: n for (m, k), n in found.items() if m == "bounce"}
    sent = found.get(("sent", ""), 0)
    bounced = sum(n for k, n in bounces.items() if k in BOUNCED_TYPES)
    spam = bounces.get(SPAM_COMPLAINT, 0)
    return {
        "Sent": sent,
        "Bounced": bounced,
        "SMTPApiErrors": bounces.get("SMTPApiError", 0),
        "BounceRate": _rate(bounced, sent),
        "SpamComplaints": spam,
        "SpamComplaintsRate": _rate(spam, sent),
        "Opens": found.get(("opens", ""), 0),
        "UniqueOpens": found.get(("opens", "unique"), 0),
        "Tracked": found.get(("tracked", ""), 0),
        "WithLinkTracking": found.get(("tracked", "links"), 0),
        "WithOpenTracking": found.get(("tracked", "opens"), 0),
        # The links of each message are not counted when it is sent.
        "TotalTrackedLinksSent": 0,
        "UniqueLinksClicked": found.get(("clicks", "unique"), 0),
        "TotalClicks": found.get(("clicks", ""), 0),
        "WithClientRecorded": found.get(("opens", "client_recorded"), 0),
        "WithPlatformRecorded": found.get(("opens", "platform_recorded"), 0),
        "WithReadTimeRecorded": 0,
    }
