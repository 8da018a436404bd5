"""A seeded random workload of messages, bounces, opens and clicks over several days, recorded
through the same functions the product uses, and the stats API's answers counted directly from
the raw rows (the definitions of ``stats.rollup``, applied in Python to every row)."""

import random
import uuid
from collections import Counter, defaultdict
from datetime import timedelta

from django.utils import timezone

from bounces.services import record_bounce
from messages.events import record_message_event
from messages.models import MessageEvent, OutboundMessage
from stats.rollup import EASTERN
from stats.series import BOUNCED_TYPES, SERIES
from streams.services import get_stream

AGENTS = [
    ("Desktop", "Thunderbird"),
    ("Mobile", "Apple Mail"),
    ("WebMail", "Gmail"),
    ("Unknown", "Unknown"),
    ("Desktop", "Chrome"),
]
LINKS = ["https://example.com/a", "https://example.com/b"]
BOUNCE_NAMES = ["HardBounce", "SoftBounce", "Transient", "SMTPApiError", "SpamComplaint",
                "Blocked", "DnsError"]  # fmt: skip


def make_message(server, *, stream="outbound", tag="", recipients=("a@example.net",),
                 received_at=None, track_opens=False, track_links="None"):  # fmt: skip
    return OutboundMessage.objects.create(
        message_id=uuid.uuid4(),
        server=server,
        stream=get_stream(server, stream),
        from_address="app@example.com",
        to=list(recipients),
        recipients=list(recipients),
        subject="Hello",
        tag=tag,
        track_opens=track_opens,
        track_links=track_links,
        content=b"Subject: Hello\r\n\r\nHi",
        status=OutboundMessage.Status.SENT,
        received_at=received_at or timezone.now(),
    )


def reader(platform: str, family: str) -> dict:
    return {"Platform": platform, "Client": {"Name": family, "Family": family}, "OS": {}}


def open_event(message, recipient, *, when, first, agent=AGENTS[0]):
    data = {"FirstOpen": first, **reader(*agent), "ReadSeconds": 0}
    return record_message_event(
        message, MessageEvent.Type.OPEN, recipient, data=data, occurred_at=when
    )


def click_event(message, recipient, *, when, link=LINKS[0], location="HTML", agent=AGENTS[4]):
    data = {"OriginalLink": link, "ClickLocation": location, **reader(*agent)}
    return record_message_event(
        message, MessageEvent.Type.CLICK, recipient, data=data, occurred_at=when
    )


def random_workload(servers, *, seed: int, messages: int = 120, days: int = 5, now=None):
    """Messages, bounces, opens and clicks at random moments of the last ``days`` days; opens
    and clicks are recorded in the order they happen, the first open of a message by a recipient
    marked ``FirstOpen`` (as ``tracking.events.record_open`` marks it)."""
    rng = random.Random(seed)
    now = now or timezone.now()
    moment = lambda since: since + (now - since) * rng.random()  # noqa: E731
    actions = []
    for i in range(messages):
        server = rng.choice(servers)
        recipients = [f"r{j}@example.net" for j in range(rng.randint(1, 3))]
        message = make_message(
            server,
            stream=rng.choice(["outbound", "broadcast"]),
            tag=rng.choice(["", "welcome", "receipt"]),
            recipients=recipients,
            received_at=moment(now - timedelta(days=days)),
            track_opens=rng.random() < 0.6,
            track_links=rng.choice(["None", "HtmlAndText", "TextOnly"]),
        )
        for _ in range(rng.randint(0, 4)):
            kind = rng.choice(["open", "open", "click", "bounce"])
            actions.append((moment(message.received_at), i, kind, message, rng.choice(recipients)))
    opened = set()
    for when, _, kind, message, recipient in sorted(actions, key=lambda a: (a[0], a[1])):
        if kind == "open":
            first = (message.pk, recipient) not in opened
            opened.add((message.pk, recipient))
            open_event(message, recipient, when=when, first=first, agent=rng.choice(AGENTS))
        elif kind == "click":
            location, agent = rng.choice(["HTML", "Text"]), rng.choice(AGENTS)
            click_event(message, recipient, when=when, link=rng.choice(LINKS),
                        location=location, agent=agent)  # fmt: skip
        else:
            record_bounce(server=message.server, stream=message.stream,
                          message_stream=message.stream.stream_id, type=rng.choice(BOUNCE_NAMES),
                          email=recipient, message_id=message.message_id, tag=message.tag,
                          bounced_at=when)  # fmt: skip


def _day(moment):
    return moment.astimezone(EASTERN).date()


def raw_counts(server, *, stream=None, tag=None, first=None, last=None) -> dict:
    """{series name: {day: Counter of response keys}}, counted from every raw row."""
    out = defaultdict(lambda: defaultdict(Counter))

    def wanted(row_stream, row_tag, day):
        return ((stream is None or row_stream == stream) and (tag is None or row_tag == tag)
                and (first is None or day >= first) and (last is None or day <= last))  # fmt: skip

    for m in OutboundMessage.objects.filter(server=server).select_related("stream"):
        day = _day(m.received_at)
        if not wanted(m.stream.stream_id, m.tag, day):
            continue
        n = len(m.recipients)
        out["sends"][day]["Sent"] += n
        opens, links = m.track_opens, m.track_links not in ("None", "")
        out["tracked"][day]["Tracked"] += n if opens or links else 0
        out["overview"][day]["WithOpenTracking"] += n if opens else 0
        out["overview"][day]["WithLinkTracking"] += n if links else 0
    for b in server.bounces.all():
        day = _day(b.bounced_at)
        if wanted(b.message_stream, b.tag, day):
            name = "spam" if b.type == "SpamComplaint" else "bounces"
            out[name][day][b.type] += 1
    events = MessageEvent.objects.filter(server=server).select_related("outbound", "stream")
    first_seen = {}
    for e in sorted(events, key=lambda e: (e.occurred_at, e.pk)):
        day = _day(e.occurred_at)
        keep = wanted(e.stream.stream_id, e.outbound.tag, day)
        if e.type == MessageEvent.Type.OPEN:
            unique = (e.message_id, e.recipient) not in first_seen
            first_seen.setdefault((e.message_id, e.recipient), True)
            if not keep:
                continue
            out["opens"][day]["Opens"] += 1
            if unique:
                out["opens"][day]["Unique"] += 1
                out["opens/platforms"][day][e.data["Platform"]] += 1
                out["opens/emailclients"][day][e.data["Client"]["Family"]] += 1
        elif e.type == MessageEvent.Type.CLICK:
            mark = ("click", e.message_id, e.recipient.lower(), e.data["OriginalLink"])
            unique = mark not in first_seen
            first_seen.setdefault(mark, True)
            if not keep:
                continue
            out["clicks"][day]["Clicks"] += 1
            out["clicks/location"][day][e.data["ClickLocation"]] += 1
            if unique:
                out["clicks"][day]["Unique"] += 1
                out["clicks/platforms"][day][e.data["Platform"]] += 1
                out["clicks/browserfamilies"][day][e.data["Client"]["Family"]] += 1
    return out


def expected_series(name: str, per_day: dict) -> dict:
    """The response ``series(name)`` must give for these raw per-day counts."""
    spec = SERIES[name]
    fixed = list(spec.fixed.values())
    days, totals = [], dict.fromkeys(fixed, 0)
    for day in sorted(per_day):
        values = {k: n for k, n in per_day[day].items() if n}
        if not values:
            continue
        values = {**dict.fromkeys(fixed, 0), **values}
        days.append({"Date": day.isoformat(), **values})
        for k, n in values.items():
            totals[k] = totals.get(k, 0) + n
    return {"Days": days, **totals}


def expected_overview(raw: dict) -> dict:
    def total(name, key):
        return sum(c[key] for c in raw[name].values())

    sent = total("sends", "Sent")
    bounced = sum(n for c in raw["bounces"].values() for t, n in c.items() if t in BOUNCED_TYPES)
    spam = total("spam", "SpamComplaint")
    rate = lambda part: round(100.0 * part / sent, 3) if sent else 0.0  # noqa: E731
    return {
        "Sent": sent, "Bounced": bounced, "SMTPApiErrors": total("bounces", "SMTPApiError"),
        "BounceRate": rate(bounced), "SpamComplaints": spam, "SpamComplaintsRate": rate(spam),
        "Opens": total("opens", "Opens"), "UniqueOpens": total("opens", "Unique"),
        "Tracked": total("tracked", "Tracked"),
        "WithLinkTracking": total("overview", "WithLinkTracking"),
        "WithOpenTracking": total("overview", "WithOpenTracking"), "TotalTrackedLinksSent": 0,
        "UniqueLinksClicked": total("clicks", "Unique"), "TotalClicks": total("clicks", "Clicks"),
        "WithClientRecorded": sum(
            n for c in raw["opens/emailclients"].values() for k, n in c.items() if k != "Unknown"
        ),
        "WithPlatformRecorded": sum(
            n for c in raw["opens/platforms"].values() for k, n in c.items() if k != "Unknown"
        ),
        "WithReadTimeRecorded": 0,
    }  # fmt: skip
