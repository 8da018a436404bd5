"""The operator dashboard's numbers, as plain functions: a handful of aggregate queries, no N+1.

Counts per server and message stream over the last 24 hours (hourly buckets), 7 days and 30 days
(daily buckets, UTC):

- **sent**: processed messages (``OutboundMessage``, by ``received_at``);
- **delivered**: ``MessageEvent`` rows of type Delivery (by ``occurred_at``);
- **bounced**: ``Bounce`` rows (by ``bounced_at``) other than SMTP API errors and Transient
  (delay) notices; the bounce rate is bounced / sent;
- **errors**: SMTP API error bounces, shown apart (they were never sent).

One grouped query per source over 30 days, bucketed by hour, serves all three windows; the SVG
charts are drawn here too, on the server, so the page needs no script and no CDN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q
from django.db.models.functions import TruncDay, TruncHour
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from bounces.models import Bounce
from bounces.types import SMTP_API_ERROR, names_where
from messages.models import MessageEvent, OutboundMessage
from servers.models import Server
from streams.models import Endpoint, MessageStream
from webhooks.models import WebhookAttempt

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

    servers = list(_scoped(Server.objects.order_by("id"), ids, "id__in").only("id", "name"))
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


# --- SVG charts ----------------------------------------------------------------------------------

SERIES = (
    ("sent", "Sent", "#3b82c4"),
    ("delivered", "Delivered", "#2f9e44"),
    ("bounced", "Bounced", "#d9480f"),
)


def chart_svg(buckets: list[Bucket], window: str, *, width=640, height=180, title="") -> SafeString:
    """A line chart of sent / delivered / bounced per bucket, as inline SVG (no script)."""
    left, right, top, bottom = 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((getattr(b.counts, key) for b in buckets for key, _, _ in SERIES), default=0)
    ymax = _nice_ceiling(peak)
    n = max(len(buckets), 1)

    def x(i):
        return left + (plot_w * (i + 0.5) / n)

    def y(v):
        return top + plot_h - (plot_h * v / ymax)

    parts = []
    for frac in (0, 0.5, 1):
        gy = top + plot_h - plot_h * frac
        parts.append(
            format_html(
                '<line x1="{}" y1="{}" x2="{}" y2="{}" class="grid"/>'
                '<text x="{}" y="{}" class="ylabel" text-anchor="end">{}</text>',
                left,
                gy,
                width - right,
                gy,
                left - 6,
                gy + 4,
                _short(ymax * frac),
            )  # fmt: skip
        )
    label_every = max(1, n // 6)
    fmt = "%H:00" if WINDOWS[window][2] == "hour" else "%b %d"
    for i, bucket in enumerate(buckets):
        if i % label_every == 0 or i == n - 1:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" class="xlabel" text-anchor="middle">{}</text>',
                    x(i),
                    height - 8,
                    bucket.start.strftime(fmt),
                )  # fmt: skip
            )
    for key, label, colour in SERIES:
        points = " ".join(
            f"{x(i):.1f},{y(getattr(b.counts, key)):.1f}" for i, b in enumerate(buckets)
        )
        parts.append(
            format_html(
                '<polyline points="{}" fill="none" stroke="{}" stroke-width="2" '
                'class="series series-{}"><title>{}</title></polyline>',
                points,
                colour,
                key,
                label,
            )  # fmt: skip
        )
    # Invisible hover targets with a tooltip per bucket.
    for i, b in enumerate(buckets):
        c = b.counts
        parts.append(
            format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" class="hover">'
                "<title>{}: {} sent, {} delivered, {} bounced, {} SMTP API errors</title></rect>",
                x(i) - plot_w / n / 2,
                top,
                plot_w / n,
                plot_h,
                b.start.strftime("%Y-%m-%d %H:00 UTC" if fmt == "%H:00" else "%Y-%m-%d"),
                c.sent,
                c.delivered,
                c.bounced,
                c.errors,
            )  # fmt: skip
        )
    legend = format_html_join(
        "",
        '<tspan fill="{}" dx="{}">■ {}</tspan>',
        ((colour, 0 if i == 0 else 12, label) for i, (_, label, colour) in enumerate(SERIES)),
    )
    body = format_html_join("", "{}", ((p,) for p in parts))
    return format_html(
        '<svg class="pm-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
        'width="100%" role="img" aria-label="{t}"><title>{t}</title>{body}'
        '<text x="{lx}" y="{ly}" class="legend">{legend}</text></svg>',
        w=width, h=height, t=title or WINDOWS[window][0], body=body,
        lx=left + 4, ly=top + 10, legend=legend,
    )  # fmt: skip


def _nice_ceiling(value: int) -> int:
    if value <= 4:
        return 4
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return int(10 * magnitude)


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


# --- One message's timeline ----------------------------------------------------------------------


@dataclass
class TimelineEntry:
    at: datetime
    label: str
    detail: str = ""
    kind: str = ""
    recipient: str = ""
    link: str = ""


def webhook_attempts(events) -> list[TimelineEntry]:
    """The webhook POSTs made for ``events`` (WebhookAttempt → WebhookDelivery → MessageEvent)."""
    rows = (
        WebhookAttempt.objects.filter(delivery__event__in=events)
        .select_related("delivery")
        .order_by("started_at", "id")
    )
    entries = []
    for attempt in rows:
        status = attempt.status_code
        outcome = f"HTTP {status}" if status else (attempt.error or "no answer")
        entries.append(
            TimelineEntry(
                attempt.started_at,
                f"Webhook attempt {attempt.number}",
                f"{outcome} (webhook {attempt.delivery.webhook_id})",
                "webhook",
            )
        )
    return entries


def accepted_how(submission) -> str:
    """Where and how a message came in, for its timeline."""
    tls = ", " + submission.tls_version if submission.tls_version else ", no TLS"
    if submission.endpoint == Endpoint.API:
        return f"through the HTTP send API from {submission.client_address} (Server API token{tls})"
    return (
        f"over SMTP from {submission.client_address} ({submission.get_endpoint_display()}"
        f" endpoint, {submission.get_credential_kind_display()}{tls})"
    )


def message_timeline(message: OutboundMessage) -> list[TimelineEntry]:
    """Accepted, processed, then every event of the message (delivered, bounced, opened, clicked,
    …) and its webhook attempts; oldest first. Three or four queries."""
    entries: list[TimelineEntry] = []
    submission = message.submission
    if submission is not None:
        entries.append(
            TimelineEntry(
                submission.received_at,
                "Accepted",
                accepted_how(submission),
                "accepted",
            )
        )
    else:
        entries.append(TimelineEntry(message.received_at, "Accepted", "", "accepted"))
    entries.append(
        TimelineEntry(
            message.processed_at,
            "Processed",
            f"{len(message.recipients)} recipient(s), {message.size} bytes",
            "processed",
        )
    )
    events = list(
        MessageEvent.objects.filter(server_id=message.server_id, message_id=message.message_id)
        .defer("data")
        .order_by("occurred_at", "id")
    )
    for event in events:
        link = ""
        if event.bounce_id:
            link = reverse("admin:bounces_bounce_change", args=[event.bounce_id])
        entries.append(
            TimelineEntry(
                event.occurred_at,
                event.get_type_display(),
                event.details,
                event.type.lower(),
                event.recipient,
                link,
            )
        )
    if events:
        entries.extend(webhook_attempts(events))
    entries.sort(key=lambda e: e.at)
    return entries
