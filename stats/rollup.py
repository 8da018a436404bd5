"""The daily roll-ups behind the stats API: each figure of each US Eastern day, per server, message
stream and tag (``DailyCount``), counted from the raw rows.

How they stay exact: ``refresh`` (every minute, ``stats.tasks``) recounts the most recent days
(``STATS_RECOUNT_DAYS``, default 2: today and yesterday, Eastern) from the raw rows and replaces
their roll-ups in one transaction; older days are frozen. A recount reads rows by their own
timestamps, not by an id cursor or a mark, so a transaction that commits late is counted by the
next recount whatever order transactions commit in; nothing is incremented, so nothing is counted
twice. A row is dated when it is recorded (a message by its receipt, an event or bounce when it
happens), so every row lands within the recounted days unless its processing lagged by more than
a day; ``manage.py recount_stats --days N`` recounts further back (after such a backlog, or once
after an upgrade). Frozen days outlive the raw rows' retention.

Each figure is stored per stream and tag, and summed over every stream, every tag and both
(``with_totals``: stream and/or tag NULL), so that a request reads the one row per day and figure
of its own filters.

What is counted (``metric``, ``key``), by the day of the row's timestamp:

- ``sent``: recipients of processed messages (a message to three recipients counts three), by
  ``received_at``; ``tracked`` "" / "opens" / "links": those with open or link tracking (either /
  opens / links);
- ``bounce`` <type>: bounce records by type (``bounced_at``), SMTP API errors and spam complaints
  among them;
- ``opens`` "": Open events; "unique": first opens of a message by a recipient (the event's
  ``FirstOpen``, decided when it is recorded); "client_recorded" / "platform_recorded": first
  opens whose reader's client / platform is known; ``open_platform`` and ``open_client`` <name>:
  first opens by the reader's platform and client family;
- ``clicks`` "": Click events; "unique": the first click of a link by a recipient of a message
  (earliest by time, then id, over all time); ``click_browser`` and ``click_platform`` <name>:
  unique clicks by browser family and platform; ``click_location`` HTML/Text: every click.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Func, IntegerField, Q, Sum, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from bounces.models import Bounce
from messages.models import MessageEvent, OutboundMessage
from servers.models import Server
from stats.models import DailyCount
from streams.models import MessageStream

EASTERN = ZoneInfo("America/New_York")
MAX_KEY = DailyCount._meta.get_field("key").max_length
# The roll-ups are replaced under this PostgreSQL advisory lock: two recounts never interleave.
LOCK_ID = 0x5374_6174  # "Stat"
PRIOR_CHUNK = 500
# Days counted in one pass: bounds the memory of a recount far back.
RECOUNT_DAYS_AT_ONCE = 7


class JsonLength(Func):
    """The length of a JSON array column."""

    function = "json_array_length"
    output_field = IntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, function="jsonb_array_length", **extra)


def today(now: datetime | None = None) -> date:
    """The current US Eastern day."""
    return (now or timezone.now()).astimezone(EASTERN).date()


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """The instants [start, end) that the Eastern days ``first``..``last`` cover."""
    start = datetime.combine(first, time.min, tzinfo=EASTERN)
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=EASTERN)
    return start, end


def refresh(now: datetime | None = None) -> int:
    """Recount the most recent ``STATS_RECOUNT_DAYS`` days; returns the roll-up rows written."""
    days = max(1, getattr(settings, "STATS_RECOUNT_DAYS", 2))
    last = today(now)
    return recount(last - timedelta(days=days - 1), last)


def recount(first: date, last: date) -> int:
    """Count the days ``first``..``last`` (Eastern, inclusive) from the raw rows and replace their
    roll-ups, a few days at a time (each day replaced whole, in one transaction); returns the
    rows written."""
    written = 0
    while first <= last:
        upto = min(last, first + timedelta(days=RECOUNT_DAYS_AT_ONCE - 1))
        written += _replace(first, upto, with_totals(count_days(first, upto)))
        first = upto + timedelta(days=1)
    return written


def with_totals(counts: Counter) -> Counter:
    """``counts`` with each figure also summed over every stream, every tag and both (stream
    and/or tag None): the rows a request that does not filter on them reads."""
    out: Counter = Counter()
    for (server_id, stream, tag, day, metric, key), n in counts.items():
        if n:
            for scope in ((stream, tag), (None, tag), (stream, None), (None, None)):
                out[(server_id, *scope, day, metric, key)] += n
    return out


def _replace(first: date, last: date, counts: Counter) -> int:
    rows = [
        DailyCount(server_id=s, stream=stream, tag=tag, day=day, metric=m, key=k, count=n)
        for (s, stream, tag, day, m, k), n in counts.items()
        if n
    ]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_ID])
        DailyCount.objects.filter(day__gte=first, day__lte=last).delete()
        DailyCount.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def count_days(first: date, last: date) -> Counter:
    """{(server_id, stream ID, tag, day, metric, key): count} of the days ``first``..``last``."""
    start, end = day_bounds(first, last)
    counts: Counter = Counter()
    server_ids = list(Server.objects.values_list("id", flat=True))
    streams = dict(MessageStream.objects.values_list("id", "stream_id"))
    _count_sent(counts, start, end, server_ids, streams)
    _count_bounces(counts, start, end)
    _count_opens(counts, start, end, server_ids, streams)
    _count_clicks(counts, start, end, server_ids, streams)
    return counts


def _day(field: str):
    return TruncDate(field, tzinfo=EASTERN)


def _count_sent(counts, start, end, server_ids, streams) -> None:
    recipients = JsonLength("recipients")
    opens = Q(track_opens=True)
    links = ~Q(track_links__in=["None", ""])
    rows = (
        # Both leading columns of the (server, stream, -received_at) index given: PostgreSQL
        # walks it once per pair instead of scanning the table.
        OutboundMessage.objects.filter(
            server_id__in=server_ids,
            stream_id__in=list(streams),
            received_at__gte=start,
            received_at__lt=end,
        )
        .annotate(day=_day("received_at"))
        .values("server_id", "stream_id", "tag", "day")
        .annotate(
            sent=Sum(recipients),
            tracked=Sum(recipients, filter=opens | links),
            opens=Sum(recipients, filter=opens),
            links=Sum(recipients, filter=links),
        )
        .order_by()
    )
    for r in rows:
        where = (r["server_id"], streams.get(r["stream_id"], ""), r["tag"], r["day"])
        counts[(*where, "sent", "")] += r["sent"] or 0
        counts[(*where, "tracked", "")] += r["tracked"] or 0
        counts[(*where, "tracked", "opens")] += r["opens"] or 0
        counts[(*where, "tracked", "links")] += r["links"] or 0


def _count_bounces(counts, start, end) -> None:
    rows = (
        Bounce.objects.filter(bounced_at__gte=start, bounced_at__lt=end)
        .annotate(day=_day("bounced_at"))
        .values("server_id", "message_stream", "tag", "day", "type")
        .annotate(n=Count("id"))
        .order_by()
    )
    for r in rows:
        key = (r["server_id"], r["message_stream"], r["tag"], r["day"], "bounce", r["type"])
        counts[key] += r["n"]


def _events(kind, start, end, server_ids, streams):
    return (
        MessageEvent.objects.filter(
            server_id__in=server_ids, type=kind, occurred_at__gte=start, occurred_at__lt=end
        )
        .exclude(stream_id=None)
        .annotate(day=_day("occurred_at"), tag=Coalesce(F("outbound__tag"), Value("")))
        .order_by()
    )


def _name(value) -> str:
    return str(value or "Unknown")[:MAX_KEY]


def _count_opens(counts, start, end, server_ids, streams) -> None:
    rows = (
        _events(MessageEvent.Type.OPEN, start, end, server_ids, streams)
        .annotate(platform=KT("data__Platform"), client=KT("data__Client__Family"))
        .values("server_id", "stream_id", "tag", "day", "platform", "client")
        .annotate(n=Count("id"), first=Count("id", filter=Q(data__FirstOpen=True)))
    )
    for r in rows:
        where = (r["server_id"], streams.get(r["stream_id"], ""), r["tag"], r["day"])
        platform, client = _name(r["platform"]), _name(r["client"])
        counts[(*where, "opens", "")] += r["n"]
        counts[(*where, "opens", "unique")] += r["first"]
        counts[(*where, "opens", "client_recorded")] += r["first"] if client != "Unknown" else 0
        counts[(*where, "opens", "platform_recorded")] += r["first"] if platform != "Unknown" else 0
        counts[(*where, "open_platform", platform)] += r["first"]
        counts[(*where, "open_client", client)] += r["first"]


def _count_clicks(counts, start, end, server_ids, streams) -> None:
    clicks = list(
        _events(MessageEvent.Type.CLICK, start, end, server_ids, streams)
        .annotate(
            link=KT("data__OriginalLink"),
            location=KT("data__ClickLocation"),
            platform=KT("data__Platform"),
            browser=KT("data__Client__Family"),
        )
        .values_list(
            "id",
            "occurred_at",
            "server_id",
            "stream_id",
            "tag",
            "day",
            "message_id",
            "recipient",
            "link",
            "location",
            "platform",
            "browser",
        )  # fmt: skip
    )
    # A click is unique when no earlier click (before these days, or earlier among them) was on
    # the same link of the same message by the same recipient.
    seen = _clicked_before(start, {c[6] for c in clicks if c[6] is not None})
    for c in sorted(clicks, key=lambda c: (c[1], c[0])):
        _, _, server_id, stream_pk, tag, day, message_id, recipient, link, *names = c
        where = (server_id, streams.get(stream_pk, ""), tag, day)
        location, platform, browser = (_name(n) for n in names)
        counts[(*where, "clicks", "")] += 1
        counts[(*where, "click_location", location)] += 1
        mark = (message_id, recipient.lower(), link or "")
        if message_id is not None and mark in seen:
            continue
        seen.add(mark)
        counts[(*where, "clicks", "unique")] += 1
        counts[(*where, "click_platform", platform)] += 1
        counts[(*where, "click_browser", browser)] += 1


def _clicked_before(start, message_ids) -> set:
    """(message_id, recipient, link) of every click before ``start`` on these messages."""
    seen = set()
    message_ids = list(message_ids)
    for i in range(0, len(message_ids), PRIOR_CHUNK):
        rows = (
            MessageEvent.objects.filter(
                message_id__in=message_ids[i : i + PRIOR_CHUNK],
                type=MessageEvent.Type.CLICK,
                occurred_at__lt=start,
            )
            .annotate(link=KT("data__OriginalLink"))
            .values_list("message_id", "recipient", "link")
        )
        seen.update((m, r.lower(), link or "") for m, r, link in rows)
    return seen
