"""The stats API (compat §11) through real HTTP: Django's test client for the shapes and rules,
the roll-ups against a full count of the raw rows after a random workload, and Postmark's own
clients (postmark.js, postmarker) against live_server."""

from datetime import date, datetime, timedelta

import postmarker.core
import pytest
from django.test import Client

from stats.rollup import EASTERN, recount, refresh, today
from stats.series import SERIES
from stats.tests.workload import (
    AGENTS,
    LINKS,
    click_event,
    expected_overview,
    expected_series,
    make_message,
    open_event,
    random_workload,
    raw_counts,
)
from streams.services import create_server

JSON = "application/json; charset=utf-8"
DAY = date(2024, 3, 5)
NOON = datetime(2024, 3, 5, 12, 0, tzinfo=EASTERN)


def token_of(server) -> str:
    return server.tokens.first().token


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=token_of(server))


def get(api, path, status=200):
    response = api.get(path)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    return response.json()


def seed_one_day(server):
    """On 2024-03-05 (Eastern): two messages to three recipients (two tracked), a bounce of
    several kinds, opens and clicks; and one message at 23:30 Eastern on the 4th (the 5th in
    UTC), which counts on the 4th."""
    from bounces.services import record_bounce

    tracked = make_message(
        server,
        tag="welcome",
        recipients=["a@example.net", "b@example.net"],
        received_at=NOON,
        track_opens=True,
        track_links="HtmlAndText",
    )
    make_message(server, stream="broadcast", received_at=NOON)
    make_message(server, received_at=datetime(2024, 3, 4, 23, 30, tzinfo=EASTERN))
    for kind in ("HardBounce", "SoftBounce", "Transient", "SMTPApiError", "SpamComplaint",
                 "Blocked"):  # fmt: skip
        record_bounce(server=server, message_stream="outbound", type=kind, email="a@example.net",
                      tag="welcome", bounced_at=NOON)  # fmt: skip
    later = NOON + timedelta(hours=1)
    open_event(tracked, "a@example.net", when=later, first=True, agent=AGENTS[1])
    open_event(tracked, "a@example.net", when=later, first=False, agent=AGENTS[1])
    open_event(tracked, "b@example.net", when=later, first=True, agent=AGENTS[3])
    click_event(tracked, "a@example.net", when=later, link=LINKS[0], location="HTML")
    click_event(tracked, "a@example.net", when=later, link=LINKS[0], location="Text")
    click_event(tracked, "A@example.net", when=later, link=LINKS[1], location="Text")
    recount(DAY - timedelta(days=1), DAY)
    return tracked


ONE_DAY = "?fromdate=2024-03-05&todate=2024-03-05"
SERIES_CASES = [
    ("sends", {"Sent": 3}),
    ("bounces", {"HardBounce": 1, "SoftBounce": 1, "Transient": 1, "SMTPApiError": 1,
                 "Blocked": 1}),
    ("spam", {"SpamComplaint": 1}),
    ("tracked", {"Tracked": 2}),
    ("opens", {"Opens": 3, "Unique": 2}),
    ("opens/platforms", {"Desktop": 0, "Mobile": 1, "WebMail": 0, "Unknown": 1}),
    ("opens/emailclients", {"Apple Mail": 1, "Unknown": 1}),
    ("clicks", {"Clicks": 3, "Unique": 2}),
    ("clicks/browserfamilies", {"Chrome": 2}),
    ("clicks/platforms", {"Desktop": 2, "Mobile": 0, "Unknown": 0}),
    ("clicks/location", {"HTML": 1, "Text": 2}),
]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "figures"), SERIES_CASES)
def test_each_series_has_its_days_and_totals(api, server, name, figures):
    seed_one_day(server)
    # camelCase paths and parameters (postmark.js) reach the same series.
    path = "/stats/outbound/" + name.replace("emailclients", "emailClients").replace(
        "browserfamilies", "browserFamilies"
    )
    body = get(api, path + ONE_DAY.replace("fromdate", "fromDate"))
    assert body == {"Days": [{"Date": "2024-03-05", **figures}], **figures}


@pytest.mark.django_db
def test_the_overview(api, server):
    seed_one_day(server)
    assert get(api, "/stats/outbound" + ONE_DAY) == {
        "Sent": 3, "Bounced": 3, "SMTPApiErrors": 1, "BounceRate": 100.0, "SpamComplaints": 1,
        "SpamComplaintsRate": 33.333, "Opens": 3, "UniqueOpens": 2, "Tracked": 2,
        "WithLinkTracking": 2, "WithOpenTracking": 2, "TotalTrackedLinksSent": 0,
        "UniqueLinksClicked": 2, "TotalClicks": 3, "WithClientRecorded": 1,
        "WithPlatformRecorded": 1, "WithReadTimeRecorded": 0,
    }  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "sent"),
    [
        ("", {"2024-03-04": 1, "2024-03-05": 3}),  # Eastern days: 23:30 on the 4th stays there
        ("?todate=2024-03-04", {"2024-03-04": 1}),
        ("?fromdate=2024-03-05T08:00:00", {"2024-03-05": 3}),
        ("?tag=welcome", {"2024-03-05": 2}),
        ("?TAG=nothing", {}),
        ("?messagestream=broadcast", {"2024-03-05": 1}),
        ("?messageStream=outbound&tag=", {"2024-03-04": 1, "2024-03-05": 2}),
    ],
)
def test_filters(api, server, query, sent):
    seed_one_day(server)
    body = get(api, "/stats/outbound/sends" + query)
    assert {d["Date"]: d["Sent"] for d in body["Days"]} == sent
    assert body["Sent"] == sum(sent.values())


@pytest.mark.django_db
def test_no_data_and_other_servers(api, server):
    other = create_server("Other")
    seed_one_day(other)
    assert get(api, "/stats/outbound/sends") == {"Days": [], "Sent": 0}
    assert get(api, "/stats/outbound/opens/emailclients") == {"Days": []}
    assert get(api, "/stats/outbound/opens/readtimes") == {"Days": []}
    assert get(api, "/stats/outbound")["Sent"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "code"),
    [("?fromdate=yesterday", 900), ("?todate=2024-13-01", 900), ("?messagestream=nope", 1226)],
)
def test_refused_queries(api, server, query, code):
    for path in ("/stats/outbound", "/stats/outbound/opens"):
        body = get(api, path + query, status=422)
        assert body["ErrorCode"] == code, body


@pytest.mark.django_db
def test_needs_a_server_token(server):
    assert Client().get("/stats/outbound").status_code == 401


# --- the roll-ups against the raw rows ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_equal_a_full_count_of_the_raw_rows(api, server, seed):
    other = create_server("Other")
    random_workload([server, other], seed=seed, messages=80, days=6)
    last = today()
    recount(last - timedelta(days=7), last)
    some_day = (last - timedelta(days=2)).isoformat()
    filters = [
        ({}, ""),
        ({"tag": "welcome"}, "?tag=welcome"),
        ({"stream": "broadcast"}, "?messagestream=broadcast"),
        ({"stream": "outbound", "tag": "welcome"}, "?messagestream=outbound&tag=welcome"),
        ({"stream": "outbound", "tag": ""}, "?messagestream=outbound"),
        ({"first": last - timedelta(days=3), "last": last - timedelta(days=1)},
         f"?fromdate={(last - timedelta(days=3)).isoformat()}&todate="
         f"{(last - timedelta(days=1)).isoformat()}"),
        ({"first": date.fromisoformat(some_day), "tag": ""}, f"?fromdate={some_day}&tag="),
    ]  # fmt: skip
    for raw_filter, query in filters:
        if raw_filter.get("tag") == "":
            raw_filter = {k: v for k, v in raw_filter.items() if k != "tag"}
        raw = raw_counts(server, **raw_filter)
        for name in SERIES:
            assert get(api, f"/stats/outbound/{name}{query}") == expected_series(name, raw[name]), (
                name,
                query,
            )
        assert get(api, f"/stats/outbound{query}") == expected_overview(raw), query


@pytest.mark.django_db
def test_refresh_recounts_the_recent_days_and_freezes_the_older(api, server, settings):
    settings.STATS_RECOUNT_DAYS = 2
    now = datetime.now(EASTERN)
    make_message(server, received_at=now)
    make_message(server, received_at=now - timedelta(days=1))
    old = make_message(server, received_at=now - timedelta(days=3))
    refresh()
    assert get(api, "/stats/outbound/sends")["Sent"] == 2  # three days back: not recounted
    recount(today() - timedelta(days=3), today())
    assert get(api, "/stats/outbound/sends")["Sent"] == 3
    old.delete()  # retention removes the raw rows; the frozen day keeps its count
    make_message(server, received_at=now)
    refresh()
    assert get(api, "/stats/outbound/sends")["Sent"] == 4


def test_the_beat_recounts_every_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["stats.refresh"]
    assert entry["task"] == "stats.refresh" and entry["schedule"] == 60.0


# --- the real clients -----------------------------------------------------------------------------

JS_METHODS = [
    ("getOutboundOverview", "Sent", 3),
    ("getSentCounts", "Sent", 3),
    ("getBounceCounts", "HardBounce", 1),
    ("getSpamComplaintsCounts", "SpamComplaint", 1),
    ("getTrackedEmailCounts", "Tracked", 2),
    ("getEmailOpenCounts", "Opens", 3),
    ("getEmailOpenPlatformUsage", "Mobile", 1),
    ("getEmailOpenClientUsage", "Apple Mail", 1),
    ("getEmailOpenReadTimes", "Days", []),
    ("getClickCounts", "Clicks", 3),
    ("getClickBrowserUsage", "Chrome", 2),
    ("getClickPlatformUsage", "Desktop", 2),
    ("getClickLocation", "Text", 2),
]


@pytest.mark.django_db(transaction=True)
def test_postmark_js_reads_every_stat(live_server, postmark_js, server):
    seed_one_day(server)
    token = token_of(server)
    for method, key, value in JS_METHODS:
        done = postmark_js(live_server.url, "Server", token, method,
                           {"fromDate": "2024-03-05", "toDate": "2024-03-05"})  # fmt: skip
        assert done["ok"], (method, done)
        assert done["result"][key] == value, (method, done["result"])
    tagged = postmark_js(live_server.url, "Server", token, "getSentCounts",
                         {"tag": "welcome", "messageStream": "outbound"})  # fmt: skip
    assert tagged["ok"] and tagged["result"]["Sent"] == 2, tagged
    missing = postmark_js(live_server.url, "Server", token, "getOutboundOverview",
                          {"messageStream": "nope"})  # fmt: skip
    assert not missing["ok"] and missing["code"] == 1226 and missing["statusCode"] == 422


@pytest.mark.django_db(transaction=True)
def test_postmarker_reads_every_stat(live_server, server):
    seed_one_day(server)
    client = postmarker.core.PostmarkClient(
        server_token=token_of(server), root_api_url=live_server.url + "/"
    )
    dates = {"fromdate": "2024-03-05", "todate": "2024-03-05"}
    assert client.stats.overview(**dates)["UniqueOpens"] == 2
    assert client.stats.sends(tag="welcome")["Sent"] == 2
    assert client.stats.bounces(**dates)["SoftBounce"] == 1
    assert client.stats.spam(**dates)["SpamComplaint"] == 1
    assert client.stats.tracked(**dates)["Tracked"] == 2
    assert client.stats.opens(**dates)["Unique"] == 2
    assert client.stats.opens_platforms(**dates)["Unknown"] == 1
    assert client.stats.emailclients(**dates)["Apple Mail"] == 1
    assert client.stats.readtimes(**dates) == {"Days": []}
    assert client.stats.clicks(**dates)["Unique"] == 2
    assert client.stats.browserfamilies(**dates)["Chrome"] == 2
    assert client.stats.clicks_platforms(**dates)["Desktop"] == 2
    assert client.stats.location(**dates)["HTML"] == 1
