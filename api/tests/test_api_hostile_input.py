"""Input that used to answer HTTP 500 — dates at the ends of the calendar, JSON nested thousands
deep, lone surrogates, NUL in a filter, a 70-character DNS label in a webhook URL, over-long
fields — now gets Postmark's error (compat §2): HTTP 422 with the ErrorCode of the endpoint's
validation (1000 for the bounce query, 402 for JSON, 403 for request fields, 1235 for a stream).
Through real HTTP requests on SQLite and PostgreSQL, and through the plain functions that hold
the rules."""

import json
from datetime import UTC, datetime

import pytest
from django.test import Client

from api import errors, params
from api.text import quoted, text_problem
from webhooks import guard
from webhooks.models import Webhook

JSON = "application/json; charset=utf-8"
PUBLIC = "https://hooks.example.com/postmark"


@pytest.fixture(autouse=True)
def no_dns(monkeypatch):
    """Names resolve to a public address without the network; bad names still fail the way
    ``socket.getaddrinfo`` fails (it encodes them with IDNA first)."""

    def resolve(host, port):
        host.encode("idna")
        return ["93.184.216.34"]

    monkeypatch.setattr(guard, "resolve", resolve)


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


def send(api, method, path, body=None):
    data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
    if data is None:
        return getattr(api, method)(path)
    return getattr(api, method)(path, data=data, content_type="application/json")


def assert_error(response, status: int, code: int) -> str:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    body = json.loads(response.content)
    assert set(body) == {"ErrorCode", "Message"}, body
    assert body["ErrorCode"] == code
    assert isinstance(body["Message"], str) and body["Message"]
    return body["Message"]


PAGE = "/bounces?count=10&offset=0&"
DUMP = "/message-streams/outbound/suppressions/dump?"


# --- query parameters ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "code", "words"),
    [
        (PAGE + "fromdate=9999-12-31", 1000, "'fromdate' parameter '9999-12-31' is out of range"),
        (PAGE + "todate=9999-12-31", 1000, "'todate' parameter '9999-12-31' is out of range"),
        (PAGE + "fromdate=0000-01-01", 1000, "out of range"),
        (PAGE + "todate=0001-01-01T00:00:00%2B14:00", 1000, "out of range"),
        (PAGE + "fromdate=9999-12-31T23:59:59.9999999-23:59", 1000, "out of range"),
        (PAGE + "fromdate=2021-01-01T12:00:00%2B99:99", 1000, "is not a date"),
        (PAGE + "fromdate=2021-01-01T12:00:00%2B24:00", 1000, "is not a date"),
        (PAGE + "fromdate=" + "2021" * 100, 1000, "is not a date"),
        (PAGE + "tag=a%00b", 1000, "'tag' parameter must not contain NUL"),
        (PAGE + "emailFilter=%00", 1000, "'emailFilter' parameter must not contain NUL"),
        (PAGE + "messagestream=out%00bound", 1000, "'messagestream' parameter must not"),
        (PAGE + "messageID=%00", 1000, "'messageID' parameter must not contain NUL"),
        (PAGE + "type=Hard%00Bounce", 1000, "'type' parameter must not contain NUL"),
        (PAGE + "count=" + "9" * 5000, 1000, "'count' parameter must be a whole number"),
        (DUMP + "fromdate=9999-12-31", 403, "'fromdate' parameter '9999-12-31' is out of range"),
        (DUMP + "EmailAddress=a%00@example.com", 403, "'EmailAddress' parameter must not"),
        (DUMP + "Origin=%00", 403, "'Origin' parameter must not contain NUL"),
        ("/message-streams/out%00bound/suppressions/dump", 1235, "does not exist"),
        ("/message-streams/" + "x" * 31 + "/suppressions/dump", 1235, "does not exist"),
        ("/webhooks?MessageStream=a%00b", 403, "'MessageStream' parameter must not contain NUL"),
    ],
)
def test_bad_query_values_are_the_endpoints_query_error(api, path, code, words):
    assert words in assert_error(api.get(path), 422, code)


@pytest.mark.django_db
def test_error_messages_quote_at_most_a_little_of_the_value(api):
    message = assert_error(api.get(PAGE + "inactive=" + "x" * 10_000), 422, 1000)
    assert len(message) < 300 and "x" * 100 + "…" in message


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "fromdate=0001-01-01",  # the first day, in US Eastern time, is still year 1 in UTC
        "todate=9999-12-30",
        "todate=9999-12-31T12:00:00",
        "fromdate=9999-12-31T23:59:58Z",
        "todate=0001-01-01T00:00:00Z",
        "fromdate=0001-01-01T00:00:00-16:00",  # an offset PostgreSQL itself would refuse
        "todate=2021-06-01T12:00:00%2B23:59",
    ],
)
def test_dates_near_the_ends_of_the_calendar_still_work(api, query):
    for path in (PAGE + query, DUMP + query):
        assert api.get(path).status_code == 200, (path, api.get(path).content)


# --- JSON bodies --------------------------------------------------------------------------------


WITH_URL = '{"Url": "' + PUBLIC + '", '


def nested(depth: int, inner: str = "1") -> str:
    return '{"a":' * depth + inner + "}" * depth


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested at most 32 levels deep"),
        (nested(5000), "nested at most 32 levels deep"),
        (nested(33), "nested at most 32 levels deep"),
        ('{"Url": "https://example.com/\\ud800"}', "lone UTF-16 surrogate"),
        (WITH_URL + '"\\udfff": 1}', "lone UTF-16 surrogate"),
        (WITH_URL + '"HttpAuth": {"Password": "\\ud83d"}}', "lone UTF-16 surrogate"),
        (WITH_URL + '"HttpHeaders": [{"Name": "X", "Value": "\\ud800"}]}',
         "lone UTF-16 surrogate"),
        (WITH_URL + '"MessageStream": "\\ud800"}', "lone UTF-16 surrogate"),
        ('{"Url": NaN}', "Numbers must be finite"),
        ('{"Url": 1e999}', "Numbers must be finite"),
        ('{"Url": -Infinity}', "Numbers must be finite"),
    ],
)  # fmt: skip
def test_json_that_cannot_be_taken_is_invalid_json(api, body, words):
    message = assert_error(send(api, "post", "/webhooks", body), 422, 402)
    assert message.startswith(errors.INVALID_JSON_MESSAGE) and words in message
    assert not Webhook.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/suppressions", "/suppressions/delete"])
def test_a_lone_surrogate_in_an_address_is_invalid_json(api, path):
    body = '{"Suppressions": [{"EmailAddress": "a\\ud800@example.com"}]}'
    response = send(api, "post", "/message-streams/outbound" + path, body)
    assert "surrogate" in assert_error(response, 422, 402)


@pytest.mark.django_db
def test_nesting_within_the_limit_is_read(api):
    body = json.loads(nested(31, "{}"))
    body["Url"] = PUBLIC
    assert send(api, "post", "/webhooks", body).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/suppressions", "/suppressions/delete"])
def test_nul_in_an_address_is_an_invalid_address(api, path):
    body = {"Suppressions": [{"EmailAddress": "a\x00@example.com"}, {"EmailAddress": "\x00"}]}
    response = send(api, "post", "/message-streams/outbound" + path, body)
    assert response.status_code == 200
    assert [r["Status"] for r in response.json()["Suppressions"]] == ["Failed", "Failed"]


# --- webhook fields -----------------------------------------------------------------------------

LABEL_70 = "a" * 70


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"Url": f"https://{LABEL_70}.example.com/hook"}, 403, "is not a valid host name"),
        ({"Url": "https://a..example.com/"}, 403, "is not a valid host name"),
        ({"Url": "https://.example.com/"}, 403, "is not a valid host name"),
        ({"Url": "https://" + ("x" * 60 + ".") * 5 + "com/"}, 403, "at most 253"),
        ({"Url": "https://exa\x00mple.com/"}, 403, "control character"),
        ({"Url": "https://example.com/\x00"}, 403, "control character"),
        ({"Url": "https://example.com/\x7f"}, 403, "control character"),
        ({"Url": "https://[::1/"}, 403, "is not a valid URL"),
        ({"Url": "https://u:p@[::1/"}, 403, "is not a valid URL"),
        ({"Url": "https://example.com:99999/"}, 403, "is not a valid URL"),
        ({"Url": PUBLIC + "/" + "x" * 2000}, 403, "longer than 2000 characters"),
        ({"Url": "https://u%00:p@hooks.example.com/"}, 403, "HttpAuth Username must not"),
        ({"Url": "https://u:p%00@hooks.example.com/"}, 403, "HttpAuth Password must not"),
        ({"Url": PUBLIC, "HttpAuth": {"Username": "\x00"}}, 403, "must not contain control"),
        ({"Url": PUBLIC, "HttpAuth": {"Username": "u" * 201}}, 403, "longer than 200"),
        ({"Url": PUBLIC, "HttpAuth": {"Password": "p\x00"}}, 403, "must not contain control"),
        ({"Url": PUBLIC, "HttpAuth": {"Password": "p" * 1001}}, 403, "longer than 1000"),
        ({"Url": PUBLIC, "HttpHeaders": [{"Name": "X-A", "Value": "€"}]}, 403, "header value"),
        ({"Url": PUBLIC, "HttpHeaders": [{"Name": "X-A", "Value": "a\x01"}]}, 403,
         "header value"),
        ({"Url": PUBLIC, "HttpHeaders": [{"Name": "X-A", "Value": "a\n"}]}, 403, "header value"),
        ({"Url": PUBLIC, "HttpHeaders": [{"Name": "X-A\n", "Value": "a"}]}, 403, "header name"),
        ({"Url": PUBLIC, "HttpHeaders": [{"Name": "X-A", "Value": "a"}] * 51}, 403, "at most 50"),
        ({"Url": PUBLIC, "MessageStream": "out\x00bound"}, 1235, "does not exist"),
        ({"Url": PUBLIC, "MessageStream": "s" * 500}, 1235, "does not exist"),
    ],
)  # fmt: skip
def test_webhook_fields_that_cannot_be_stored_or_sent_are_refused(api, body, code, words):
    assert words in assert_error(send(api, "post", "/webhooks", body), 422, code)
    assert not Webhook.objects.exists()


@pytest.mark.django_db
def test_a_refused_edit_leaves_the_webhook_as_it_was(api):
    created = send(api, "post", "/webhooks", {"Url": PUBLIC}).json()
    for body in (
        {"Url": f"https://{LABEL_70}.example.com/"},
        {"Url": PUBLIC + "/x", "HttpAuth": {"Username": "\x00"}},
        '{"Url": "https://example.com/\\ud800"}',
        nested(1000),
    ):
        response = send(api, "put", f"/webhooks/{created['ID']}", body)
        assert response.status_code == 422, body
    assert Webhook.objects.get().url == PUBLIC


@pytest.mark.django_db
def test_latin1_header_values_and_international_host_names_are_accepted(api):
    body = {
        "Url": "https://bücher.example.com/hook",
        "HttpHeaders": [{"Name": "X-Note", "Value": "café\tau lait"}],
    }
    response = send(api, "post", "/webhooks", body)
    assert response.status_code == 200, response.content
    assert response.json()["HttpHeaders"] == body["HttpHeaders"]


# --- headers, methods, the schema ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["\x00", "tök€n", "t" * 10_000, "a\ud800b"])
def test_odd_tokens_are_bad_tokens(token):
    response = Client(HTTP_X_POSTMARK_SERVER_TOKEN=token).get("/deliverystats")
    assert_error(response, 401, 10)


@pytest.mark.django_db
def test_errors_of_the_schema_view_are_postmark_json():
    assert_error(Client().post("/openapi.json"), 405, 405)
    assert Client().get("/openapi.json").status_code == 200


# --- the plain functions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["9999-12-31", "0000-01-01", "0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00",
     "9999-12-31T23:59:59.9999999-23:59"],
)  # fmt: skip
def test_parse_period_refuses_periods_beyond_the_calendar(raw):
    with pytest.raises(params.DateOutOfRange):
        params.parse_period(raw)


@pytest.mark.parametrize(
    "raw",
    ["2021-01-01T12:00:00+99:99", "2021-02-30", "2021-01-01T24:00:00", "٢٠٢١-٠١-٠١", "2" * 65,
     "2021-01-01T12:00:00." + "0" * 60],
)  # fmt: skip
def test_parse_period_refuses_what_is_not_a_date(raw):
    with pytest.raises(ValueError) as caught:
        params.parse_period(raw)
    assert not isinstance(caught.value, params.DateOutOfRange)


def test_parse_period_keeps_every_representable_date():
    start, end = params.parse_period("0001-01-01")
    assert start.tzinfo == UTC and start.year == 1 and end > start
    start, end = params.parse_period("9999-12-31T12:00:00")
    assert end.astimezone(UTC) < datetime(9999, 12, 31, 23, 59, tzinfo=UTC)


def test_json_problem():
    assert errors.json_problem(json.loads(nested(32))) is None
    assert "nested" in errors.json_problem(json.loads(nested(33)))
    assert "surrogate" in errors.json_problem({"a": ["\ud800"]})
    assert "surrogate" in errors.json_problem({"\udc00": 1})
    assert "finite" in errors.json_problem([1, float("nan")])
    assert errors.json_problem({"a": "\U0001f600", "b": [None, True, 10**50, 1.5]}) is None


def test_text_rules():
    assert "NUL" in text_problem("a\x00")
    assert "surrogate" in text_problem("\ud800")
    assert text_problem("ordinary é 😀") is None
    assert quoted("\ud800x") == "\ufffdx"
    assert quoted("y" * 500) == "y" * 100 + "…"


@pytest.mark.parametrize(
    "url",
    [f"https://{LABEL_70}.example.com/", "https://a..b/", "https://exa\x00mple.com/",
     "https://example.com/\ud800", "https://\ud800.com/", "https://x/" + "y" * 2000,
     "https://" + "a." * 127 + "com/"],
)  # fmt: skip
def test_check_url_refuses_urls_that_cannot_be_sent(url):
    with pytest.raises(guard.UnsafeUrl):
        guard.check_url(url, private_ok=True)
    with pytest.raises(guard.UnsafeUrl):
        guard.parse_url(url)


def test_split_credentials_leaves_a_broken_url_for_check_url_to_refuse():
    assert guard.split_credentials(" https://u:p@[::1/ ") == ("https://u:p@[::1/", "", "")
    with pytest.raises(guard.UnsafeUrl, match="not a valid URL"):
        guard.check_url("https://u:p@[::1/")


@pytest.mark.parametrize(
    ("entry", "valid"),
    [
        ({"Name": "X-A", "Value": "plain"}, True),
        ({"Name": "X-A", "Value": "café\tau lait"}, True),
        ({"Name": "X-A", "Value": "€"}, False),
        ({"Name": "X-A", "Value": "a\x00"}, False),
        ({"Name": "X-A", "Value": "a\n"}, False),
        ({"Name": "X-A\n", "Value": "a"}, False),
    ],
)
def test_validate_headers_accepts_only_what_http_can_send(entry, valid):
    if valid:
        assert guard.validate_headers([entry]) == [entry]
    else:
        with pytest.raises(ValueError, match="HttpHeaders"):
            guard.validate_headers([entry])


@pytest.mark.django_db
def test_too_many_query_parameters_is_a_bad_request(api):
    query = "&".join(f"p{i}=1" for i in range(2000))
    assert_error(api.get(PAGE + query), 400, 400)
