"""Outbound counts per server and stream over time, as plain functions: a handful of aggregate
queries, no N+1. The admin's dashboard draws them (``postmark_site.charts``); a stats API can
answer from them too.

Counts per server and message stream over the last 24 hours (hourly buckets), 7 days and 30 days
(daily buckets, UTC):

- **sent**: processed messages (``OutboundMessage``, by ``received_at``);
- **delivered**: ``MessageEvent`` rows of type Delivery (by ``occurred_at``);
- **bounced**: ``Bounce`` rows (by ``bounced_at``) other than SMTP API errors and Transient
  (delay) notices; the bounce rate is bounced / sent;
- **errors**: SMTP API error bounces, shown apart (they were never sent).

One grouped query per source over the last 24 hours, bucketed by hour, and the finished days of
the last 30 (counted once and cached) serve all three windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from bounces.models import Bounce
from bounces.types import SMTP_API_ERROR, names_where
from messages.models import MessageEvent, OutboundMessage
from servers.models import Server
from streams.models import MessageStream

# Bounce types that do not count as bounces in the bounce rate.
NOT_BOUNCES = names_where(lambda t: not t.counts_in_bounce_rate)
WINDOWS = {"24h": ("Last 24 hours", 24, "hour"), "7d": ("Last 7 days", 7, "day"),
           "30d": ("Last 30 days", 30, "day")}  # fmt: skip
DEFAULT_WINDOW = "7d"
LATEST_ERRORS = 10


@dataclass
class Counts:
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    errors: int = 0

    def add(self, other: Counts) -> None:
        self.sent += other.sent
        self.delivered += other.delivered
        self.bounced += other.bounced
        self.errors += other.errors

    @property
    def bounce_rate(self) -> float | None:
        return self.bounced / self.sent if self.sent else None

    @property
    def bounce_rate_display(self) -> str:
        rate = self.bounce_rate
        return "–" if rate is None else f"{rate:.1%}"


@dataclass
class Bucket:
    start: datetime
    counts: Counts = field(default_factory=Counts)


@dataclass
class StreamStats:
    server_id: int
    stream_id: str  # Postmark's stream ID, e.g. "outbound"
    stream: MessageStream | None  # None for a stream named by a bounce that does not exist
    totals: dict[str, Counts] = field(default_factory=dict)


@dataclass
class ServerStats:
    server: Server
    streams: list[StreamStats] = field(default_factory=list)
    totals: dict[str, Counts] = field(default_factory=dict)
    series: dict[str, list[Bucket]] = field(default_factory=dict)


@dataclass
class Dashboard:
    now: datetime
    servers: list[ServerStats]
    totals: dict[str, Counts]
    latest_errors: list[Bounce]


def window_buckets(window: str, now: datetime) -> list[datetime]:
    """The bucket starts of a window, oldest first (UTC hours or days)."""
    _, n, unit = WINDOWS[window]
    now = now.astimezone(UTC)
    if unit == "hour":
        last = now.replace(minute=0, second=0, microsecond=0)
        return [last - timedelta(hours=n - 1 - i) for i in range(n)]
    last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [last - timedelta(days=n - 1 - i) for i in range(n)]


def _bucket_of(window: str, moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    if WINDOWS[window][2] == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _scoped(queryset, server_ids, lookup="server_id__in"):
    return queryset if server_ids is None else queryset.filter(**{lookup: server_ids})


def aggregate_rows(trunc, since, until, ids, stream_ids=None) -> list[tuple]:
    """Grouped counts from ``since`` (to ``until``), three queries: rows of
    ("sent"|"delivered", server_id, stream pk, bucket, n) and
    ("bounced", server_id, stream ID, bucket, bounces, SMTP API errors)."""

    def window(queryset, field):
        queryset = queryset.filter(**{f"{field}__gte": since})
        if until is not None:
            queryset = queryset.filter(**{f"{field}__lt": until})
        return _scoped(queryset, ids).annotate(bucket=trunc(field)).order_by()

    messages = OutboundMessage.objects.all()
    if stream_ids is not None:
        # With both leading columns given, PostgreSQL walks the (server, stream, -received_at)
        # index once per pair instead of scanning the table.
        messages = messages.filter(stream_id__in=stream_ids)
    rows = [
        ("sent", r["server_id"], r["stream_id"], r["bucket"], r["n"])
        for r in window(messages, "received_at")
        .values("server_id", "stream_id", "bucket")
        .annotate(n=Count("id"))
    ]
    rows += [
        ("delivered", r["server_id"], r["stream_id"], r["bucket"], r["n"])
        for r in window(MessageEvent.objects.filter(type=MessageEvent.Type.DELIVERY), "occurred_at")
        .values("server_id", "stream_id", "bucket")
        .annotate(n=Count("id"))
    ]
    rows += [
        ("bounced", r["server_id"], r["message_stream"], r["bucket"], r["b"], r["e"])
        for r in window(Bounce.objects, "bounced_at")
        .values("server_id", "message_stream", "bucket")
        .annotate(
            b=Count("id", filter=~Q(type__in=NOT_BOUNCES)),
            e=Count("id", filter=Q(type=SMTP_API_ERROR)),
        )
    ]
    return rows


def past_days(first: datetime, today: datetime) -> list[tuple]:
    """Daily rows for the finished days ``first`` ≤ day < ``today``, for all servers.

    A finished day hardly changes, so each is cached (Django's cache, DASHBOARD_DAY_CACHE_SECONDS,
    default one hour; 0 turns it off) and only the missing days are counted, in one pass. At a
    million messages a month that pass is the dashboard's one expensive moment, once per day
    and process; the rows cached are bounded by streams, not by traffic."""
    seconds = getattr(settings, "DASHBOARD_DAY_CACHE_SECONDS", 3600)
    days = [first + timedelta(days=i) for i in range((today - first).days)]
    if not days:
        return []
    keys = {day: f"pm-dashboard:v1:day:{day.date().isoformat()}" for day in days}
    found = cache.get_many(list(keys.values())) if seconds else {}
    missing = [day for day in days if keys[day] not in found]
    rows = [row for day in days if keys[day] in found for row in found[keys[day]]]
    if missing:
        fresh = aggregate_rows(TruncDay, missing[0], missing[-1] + timedelta(days=1), None)
        per_day: dict[datetime, list] = {day: [] for day in missing}
        for row in fresh:
            day = _bucket_of("30d", row[3])
            if day in per_day:
                per_day[day].append(row)
        rows += [row for day in missing for row in per_day[day]]
        if seconds:
            cache.set_many({keys[day]: per_day[day] for day in missing}, seconds)
    return rows


def collect(server_ids=None, now=None, *, errors_limit: int = LATEST_ERRORS) -> Dashboard:
    """Everything the dashboard shows, for the given servers (None: all), in a fixed number of
    queries whatever the number of servers, streams or messages: per source (messages,
    deliveries, bounces) one grouped by hour over the last 24 hours, which also gives today,
    and the finished days of the last 30 from ``past_days`` (cached). The rows returned are
    bounded by streams × 54, never by traffic."""
    now = now or timezone.now()
    ids = None if server_ids is None else list(server_ids)
    starts = {w: window_buckets(w, now)[0] for w in WINDOWS}

    servers = list(
        _scoped(Server.objects.order_by("id"), ids, "id__in").only("id", "name", "delivery_type")
    )
    streams = list(
        _scoped(MessageStream.objects.order_by("server_id", "id"), ids).only(
            "id", "server_id", "stream_id", "name", "message_stream_type", "archived_at"
        )
    )
    stream_key = {s.pk: (s.server_id, s.stream_id) for s in streams}

    # (unit, server_id, stream_id, bucket start) -> Counts
    cells: dict[tuple[str, int, str, datetime], Counts] = {}

    def cell(unit, server_id, stream_id, start):
        key = (unit, server_id, stream_id or "", start)
        found = cells.get(key)
        if found is None:
            found = cells[key] = Counts()
        return found

    def add_rows(unit, rows, scoped=True):
        for kind, server_id, stream, bucket, *numbers in rows:
            if not scoped and ids is not None and server_id not in ids:
                continue
            if kind == "bounced":
                counts = cell(unit, server_id, stream, bucket)
                counts.bounced += numbers[0]
                counts.errors += numbers[1]
                continue
            if stream not in stream_key:
                continue  # a stream purged since (or of a server not shown)
            server_id, stream_id = stream_key[stream]
            counts = cell(unit, server_id, stream_id, bucket)
            setattr(counts, kind, getattr(counts, kind) + numbers[0])

    # The last 24 hours by hour, for the servers shown, named explicitly so that the indexes
    # that lead with the server serve it; today (since midnight UTC, inside those 24 hours) is
    # summed from the same rows; the finished days come from past_days.
    today = starts["30d"] + timedelta(days=29)
    hourly = aggregate_rows(
        TruncHour, starts["24h"], None, [s.pk for s in servers], [s.pk for s in streams]
    )
    add_rows("hour", hourly)
    add_rows("day", [(r[0], r[1], r[2], today, *r[4:]) for r in hourly if r[3] >= today])
    add_rows("day", past_days(starts["30d"], today), scoped=False)

    by_server: dict[int, ServerStats] = {
        s.pk: ServerStats(s, totals={w: Counts() for w in WINDOWS}) for s in servers
    }
    for stats in by_server.values():
        stats.series = {w: [Bucket(b) for b in window_buckets(w, now)] for w in WINDOWS}
    by_stream: dict[tuple[int, str], StreamStats] = {}
    for s in streams:
        if s.server_id in by_server:
            by_stream[(s.server_id, s.stream_id)] = StreamStats(
                s.server_id, s.stream_id, s, {w: Counts() for w in WINDOWS}
            )
    window_units = {w: WINDOWS[w][2] for w in WINDOWS}
    for (unit, server_id, stream_id, start), counts in cells.items():
        stats = by_server.get(server_id)
        if stats is None:
            continue
        key = (server_id, stream_id)
        if key not in by_stream:
            by_stream[key] = StreamStats(
                server_id, stream_id or "(none)", None, {w: Counts() for w in WINDOWS}
            )
        for w, w_unit in window_units.items():
            if w_unit != unit or start < starts[w]:
                continue
            by_stream[key].totals[w].add(counts)
            stats.totals[w].add(counts)
            index = _index_of(stats.series[w], _bucket_of(w, start))
            if index is not None:
                stats.series[w][index].counts.add(counts)
    for stream_stats in by_stream.values():
        by_server[stream_stats.server_id].streams.append(stream_stats)

    totals = {w: Counts() for w in WINDOWS}
    for stats in by_server.values():
        for w in WINDOWS:
            totals[w].add(stats.totals[w])

    errors = list(
        _scoped(Bounce.objects.filter(type=SMTP_API_ERROR), ids)
        .select_related("server")
        .defer("content", "metadata", "server__strict_smtp")
        .order_by("-bounced_at", "-id")[:errors_limit]
    )
    return Dashboard(now, list(by_server.values()), totals, errors)


def _index_of(series: list[Bucket], start: datetime) -> int | None:
    # Buckets are evenly spaced; compute the index instead of searching.
    if not series or start < series[0].start:
        return None
    step = (series[1].start - series[0].start) if len(series) > 1 else timedelta(hours=1)
    index = int((start - series[0].start) / step)
    return index if index < len(series) else None
