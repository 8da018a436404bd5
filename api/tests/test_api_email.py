"""POST /email and /email/batch (compat §5): every field into MIME, the answers Postmark gives
(exact sentences), what is stored for an accepted message and nothing for a rejected one, batch
isolation, and a batch's fixed number of queries."""

import base64
import email
import email.policy
import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bounces.models import Bounce
from messages import processing
from messages.models import OutboundMessage, Recipient, Submission
from streams.models import StreamType
from streams.services import create_stream, get_stream
from streams.suppressions import suppress

pytestmark = pytest.mark.django_db

JSON = "application/json; charset=utf-8"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nimage").decode()


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


@pytest.fixture
def outbound(server):
    return get_stream(server, "outbound")


def message(**fields):
    base = {"From": "app@example.com", "To": "user@example.net", "Subject": "Hi",
            "TextBody": "Hello"}  # fmt: skip
    base.update(fields)
    return base


def post(api, path, body):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return api.post(path, data=data, content_type="application/json")


def sent(api, body, path="/email") -> dict:
    response = post(api, path, body)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == JSON
    return response.json()


def assert_error(response, status: int, code: int) -> str:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    body = response.json()
    assert set(body) == {"ErrorCode", "Message"}, body
    assert body["ErrorCode"] == code
    return body["Message"]


def parsed(outbound_message) -> email.message.EmailMessage:
    return email.message_from_bytes(bytes(outbound_message.content), policy=email.policy.default)


def nothing_stored():
    return not (
        Submission.objects.exists() or OutboundMessage.objects.exists() or Bounce.objects.exists()
    )


# --- a single message ------------------------------------------------------------------------


def test_a_message_is_answered_stored_and_processed(api, server):
    answer = sent(api, message(To='Joe Smith <joe@example.net>, "Doe, Jane" <jane@example.net>'))
    assert set(answer) == {"To", "SubmittedAt", "MessageID", "ErrorCode", "Message"}
    assert answer["ErrorCode"] == 0 and answer["Message"] == "OK"
    assert answer["To"] == 'Joe Smith <joe@example.net>, "Doe, Jane" <jane@example.net>'
    assert answer["SubmittedAt"].endswith("Z")
    submission = Submission.objects.get()
    assert str(submission.message_id) == answer["MessageID"]
    assert submission.status == "processed" and submission.endpoint == "api"
    assert submission.credential_kind == "server_token"
    assert submission.rcpt_to == ["joe@example.net", "jane@example.net"]
    assert bytes(submission.raw) == b""  # kept once: as the outbound message
    out = OutboundMessage.objects.get(message_id=answer["MessageID"])
    assert out.submission == submission and out.stream.stream_id == "outbound"
    assert out.to == ["joe@example.net", "jane@example.net"]
    assert sorted(Recipient.objects.values_list("email", flat=True)) == [
        "jane@example.net", "joe@example.net"
    ]  # fmt: skip
    mime = parsed(out)
    assert (
        mime["Message-ID"] == f"<{answer['MessageID']}@{out.message_id_header[1:-1].split('@')[1]}>"
    )
    assert str(mime["To"]) == 'Joe Smith <joe@example.net>, "Doe, Jane" <jane@example.net>'
    assert mime["Subject"] == "Hi" and mime["Date"]


def test_every_field_reaches_the_message(api, server):
    body = message(
        From="Shop Ünïcode <shop@example.com>",
        Cc="copy@example.net",
        Bcc="hidden@example.net",
        Subject="Grüße",
        ReplyTo="Replies <reply@example.com>",
        HtmlBody="<p>Hi <img src='cid:logo.png'></p>",
        TextBody="Hi",
        Tag="welcome",
        Metadata={"color": "blue", "client-id": 12345},
        TrackOpens=True,
        TrackLinks="HtmlOnly",
        Headers=[{"Name": "X-Custom", "Value": "yes"}, {"Name": "Content-Type", "Value": "x/y"}],
        Attachments=[
            {
                "Name": "logo.png",
                "Content": PNG,
                "ContentType": "image/png",
                "ContentID": "cid:logo.png",
            },  # fmt: skip
            {
                "Name": "report.pdf",
                "Content": base64.b64encode(b"%PDF").decode(),
                "ContentType": "application/pdf",
            },  # fmt: skip
        ],
        MessageStream="outbound",
    )
    answer = sent(api, body)
    out = OutboundMessage.objects.get(message_id=answer["MessageID"])
    assert out.tag == "welcome"
    assert out.metadata == {"color": "blue", "client-id": "12345"}
    assert out.track_opens is True and out.track_links == "HtmlOnly"
    assert out.cc == ["copy@example.net"] and out.bcc == ["hidden@example.net"]
    assert sorted(out.recipients) == ["copy@example.net", "hidden@example.net", "user@example.net"]
    mime = parsed(out)
    assert str(mime["From"]) == "Shop Ünïcode <shop@example.com>"
    assert mime["Subject"] == "Grüße"
    assert str(mime["Reply-To"]) == "Replies <reply@example.com>"
    assert mime["X-Custom"] == "yes"
    assert mime["Bcc"] is None and not any(k.lower().startswith("x-pm-") for k in mime)
    assert mime.get_content_type() == "multipart/mixed"
    assert mime.get_body(("plain",)).get_content().strip() == "Hi"
    html = mime.get_body(("html",))
    assert "cid:logo.png" in html.get_content()
    related = next(p for p in mime.walk() if p.get_content_type() == "multipart/related")
    image = related.get_payload()[1]
    assert image["Content-ID"] == "<logo.png>" and image.get_content_disposition() == "inline"
    assert image.get_content() == base64.b64decode(PNG)
    [pdf] = [p for p in mime.iter_attachments() if p.get_filename() == "report.pdf"]
    assert pdf.get_content_type() == "application/pdf" and pdf.get_content() == b"%PDF"
    assert sum(1 for p in mime.walk() if p["MIME-Version"]) == 1


def test_html_only_and_text_only(api):
    html = OutboundMessage.objects.get(
        message_id=sent(api, message(TextBody=None, HtmlBody="<b>x</b>"))["MessageID"]
    )
    assert parsed(html).get_content_type() == "text/html"
    text = OutboundMessage.objects.get(message_id=sent(api, message())["MessageID"])
    assert parsed(text).get_content_type() == "text/plain"


def test_long_and_non_ascii_bodies_are_7bit_on_the_wire(api):
    body = message(TextBody="é" * 5000 + "\n" + "x" * 3000, HtmlBody="<p>" + "ü" * 2000 + "</p>")
    out = OutboundMessage.objects.get(message_id=sent(api, body)["MessageID"])
    content = bytes(out.content)
    assert content.isascii()
    assert max(len(line) for line in content.split(b"\r\n")) <= 998
    assert parsed(out).get_body(("plain",)).get_content().startswith("é" * 5000)


def test_unknown_keys_and_explicit_nulls_are_taken(api):
    body = message(Cc=None, Bcc=None, Tag=None, HtmlBody=None, Metadata=None, Headers=None,
                   Attachments=None, MessageStream=None, TrackOpens=None, TrackLinks=None,
                   ReplyTo=None, TemplateModel={"name": "x"}, InlineCss=True)  # fmt: skip
    assert sent(api, body)["ErrorCode"] == 0


def test_field_names_in_any_case(api):
    answer = sent(api, {"from": "app@example.com", "TO": "user@example.net", "textbody": "x"})
    assert answer["ErrorCode"] == 0


def test_path_spellings(api):
    for path in ("/email/", "/Email//", "/EMAIL/BATCH/", "/email//batch"):
        body = [message()] if "batch" in path.lower() else message()
        assert post(api, path, body).status_code == 200, path


# --- refusals, with Postmark's words -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"To": "invalid@localhost"}, "Invalid 'To' address: 'invalid@localhost'."),
        ({"Cc": "user@+"}, "Error parsing 'Cc': Illegal email domain '+' in address 'user@+'."),
        ({"Bcc": "nobody"},
         "Error parsing 'Bcc': Illegal email address 'nobody'. It must contain the '@' symbol."),
        ({"To": "a b@example.net"}, "Invalid 'To' address: 'a b@example.net'."),
        ({"From": "app@"}, "Invalid 'From' address: 'app@'."),
        ({"From": None}, "Invalid 'From' address: ''."),
        ({"From": ""}, "Invalid 'From' address: ''."),
        ({"ReplyTo": "r@exa!mple.com"},
         "Error parsing 'Reply-To': Illegal email domain 'exa!mple.com' in address "
         "'r@exa!mple.com'."),
        ({"To": "a@exa_mple.com"},
         "Error parsing 'To': Illegal email domain 'exa_mple.com' in address 'a@exa_mple.com'."),
        ({"To": None}, "Zero recipients specified"),
        ({"TextBody": None}, "Provide either email TextBody or HtmlBody or both."),
        ({"TextBody": ""}, "Provide either email TextBody or HtmlBody or both."),
        ({"Attachments": [{"Name": "a", "Content": "!!!"}]},
         "Invalid email request: the Content of attachment 'a' is not base64."),
        ({"Metadata": {"a key": "v"}}, "Invalid metadata content: the key 'a key' may hold only "
         "printable ASCII characters, no spaces and no colon."),
        ({"Metadata": {"Color": "a", "color": "b"}}, "Invalid metadata content: the key 'color' "
         "is given twice (keys are compared in any letter case)."),
        ({"Metadata": {"k" * 21: "v"}},
         f"Invalid email request: Metadata key '{'k' * 21}' is longer than 20 characters."),
        ({"Metadata": {"k": "v" * 81}},
         "Invalid email request: The value of metadata key 'k' is longer than 80 characters."),
        ({"Metadata": {f"k{i}": "v" for i in range(11)}},
         "Invalid email request: A message may have at most 10 metadata fields."),
        ({"Tag": "t" * 1001}, "Invalid email request: The tag is longer than 1000 characters."),
        ({"TrackLinks": "Sometimes"}, "Invalid email request: X-PM-TrackLinks must be None, "
         "HtmlAndText, HtmlOnly or TextOnly, not 'Sometimes'."),
        ({"To": ", ".join(f"u{i}@example.net" for i in range(51))},
         "Invalid email request: A message may have at most 50 recipients, this one has 51."),
    ],
)  # fmt: skip
def test_invalid_messages_are_300_and_store_nothing(api, fields, text):
    assert assert_error(post(api, "/email", message(**fields)), 422, 300) == text
    assert nothing_stored()


def test_fifty_recipients_across_to_cc_and_bcc_are_allowed(api):
    to = ", ".join(f"t{i}@example.net" for i in range(20))
    cc = ", ".join(f"c{i}@example.net" for i in range(20))
    bcc = ", ".join(f"b{i}@example.net" for i in range(10))
    assert sent(api, message(To=to, Cc=cc, Bcc=bcc))["ErrorCode"] == 0
    assert (
        post(api, "/email", message(To=to, Cc=cc, Bcc=bcc + ", x@example.net")).json()["ErrorCode"]
        == 300
    )


@pytest.mark.parametrize("body", ["{", "not json", '{"From": "a@b.c",}', "[1, 2]", '"text"'])
def test_invalid_json_is_402(api, body):
    assert assert_error(post(api, "/email", body), 422, 402).startswith("Received invalid JSON")


@pytest.mark.parametrize(
    "fields",
    [{"Subject": {"a": 1}}, {"Headers": "X-A: b"}, {"Attachments": {"Name": "a"}},
     {"Attachments": ["a"]}, {"Headers": [1]}, {"TextBody": ["a"]}],
)  # fmt: skip
def test_wrong_field_types_are_refused(api, fields):
    assert_error(post(api, "/email", message(**fields)), 422, 403)
    assert nothing_stored()


def test_over_ten_megabytes_is_413(api, settings):
    settings.SMTP_MAX_MESSAGE_SIZE = 10_000
    response = post(api, "/email", message(TextBody="x" * 10_001))
    assert_error(response, 413, 413)
    content = base64.b64encode(b"x" * 9_000).decode()
    response = post(api, "/email", message(Attachments=[{"Name": "a", "Content": content}]))
    assert_error(response, 413, 413)  # under the limit as JSON fields, over it as MIME
    assert nothing_stored()


def test_a_bad_token_is_401(server):
    response = post(Client(HTTP_X_POSTMARK_SERVER_TOKEN="nope"), "/email", message())
    assert_error(response, 401, 10)
    assert_error(post(Client(), "/email/batch", [message()]), 401, 10)


# --- streams -----------------------------------------------------------------------------------


def test_streams(api, server):
    create_stream(server, "news", StreamType.BROADCASTS, name="News")
    out = OutboundMessage.objects.get(
        message_id=sent(api, message(MessageStream="news"))["MessageID"]
    )
    assert out.stream.stream_id == "news"  # the API sends to Broadcasts streams too
    assert assert_error(post(api, "/email", message(MessageStream="nope")), 422, 1235) == (
        "The stream provided: 'nope' does not exist on this server."
    )
    text = assert_error(post(api, "/email", message(MessageStream="inbound")), 422, 1236)
    assert text == "Sending is not supported for the Inbound stream 'inbound'."
    get_stream(server, "news").__class__.objects.filter(stream_id="news").update(
        archived_at=timezone.now()
    )
    assert_error(post(api, "/email", message(MessageStream="news")), 422, 1236)
    assert OutboundMessage.objects.count() == 1 and not Bounce.objects.exists()


# --- inactive recipients: rejected or partly accepted ----------------------------------------


def test_all_recipients_inactive_is_406_and_nothing_happens(api, outbound):
    suppress(outbound, "gone@example.net", "HardBounce", "Recipient")
    suppress(outbound, "spam@example.net", "SpamComplaint", "Recipient")
    text = assert_error(post(api, "/email", message(To="Gone@Example.net, spam@example.net")), 422,
                        406)  # fmt: skip
    assert text == (
        "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
        "addresses: gone@example.net, spam@example.net. Inactive recipients are ones that have "
        "generated a hard bounce, a spam complaint, or a manual suppression."
    )
    # Rejected over HTTP: no submission, no SMTPApiError bounce, nothing to deliver.
    assert nothing_stored()


def test_some_recipients_inactive_is_accepted_for_the_others(api, outbound):
    suppress(outbound, "gone@example.net", "HardBounce", "Recipient")
    answer = sent(api, message(To="ok@example.net, Gone@example.net", Bcc="b@example.net"))
    assert answer["ErrorCode"] == 0
    assert answer["Message"] == (
        "Message OK, but will not deliver to these inactive addresses: gone@example.net. "
        "Inactive recipients are ones that have generated a hard bounce or a spam complaint."
    )
    out = OutboundMessage.objects.get(message_id=answer["MessageID"])
    assert out.recipients == ["ok@example.net", "b@example.net"]
    assert sorted(Recipient.objects.values_list("email", flat=True)) == [
        "b@example.net", "ok@example.net"
    ]  # fmt: skip
    # The answer told the client; unlike SMTP, no SMTPApiError bounce is recorded.
    assert not Bounce.objects.exists()


def test_the_same_rules_over_smtp_record_smtp_api_errors(server, outbound):
    """The contrast: one function decided both; SMTP records what HTTP answers."""
    from conftest import accepted_submission

    suppress(outbound, "gone@example.net", "HardBounce", "Recipient")
    raw = b"From: app@example.com\r\nTo: ok@example.net, gone@example.net\r\n\r\nHi\r\n"
    submission = accepted_submission(server, raw, ["ok@example.net", "gone@example.net"])
    assert processing.process_submission(submission.pk) == "processed"
    assert Bounce.objects.get().type == "SMTPApiError"
    assert OutboundMessage.objects.get().recipients == ["ok@example.net"]


# --- Postmark's test token -----------------------------------------------------------------


def test_the_test_token_validates_without_storing(db):
    test = Client(HTTP_X_POSTMARK_SERVER_TOKEN="POSTMARK_API_TEST")
    answer = sent(test, message())
    assert answer["ErrorCode"] == 0 and answer["Message"] == "Test job accepted"
    assert answer["To"] == "user@example.net" and answer["MessageID"]
    assert_error(post(test, "/email", message(To="invalid@localhost")), 422, 300)
    answers = sent(test, [message(), message(To="x")], path="/email/batch")
    assert [a["ErrorCode"] for a in answers] == [0, 300]
    assert nothing_stored()


# --- batches ---------------------------------------------------------------------------------


def test_a_batch_is_answered_item_by_item_in_order(api, outbound):
    suppress(outbound, "gone@example.net", "HardBounce", "Recipient")
    answers = sent(
        api,
        [
            message(To="a@example.net"),
            message(To="gone@example.net"),
            message(To="invalid@localhost"),
            "not an object",
            message(To="b@example.net, gone@example.net", TemplateModel={"x": 1}),
            message(MessageStream="nope"),
            message(To="c@example.net"),
        ],
        path="/email/batch",
    )
    assert [a["ErrorCode"] for a in answers] == [0, 406, 300, 402, 0, 1235, 0]
    assert [a["To"] for a in answers] == [
        "a@example.net", "gone@example.net", "invalid@localhost", "", "b@example.net, "
        "gone@example.net", "user@example.net", "c@example.net",
    ]  # fmt: skip
    for answer in answers:
        assert answer["ErrorCode"] or set(answer) == {
            "To", "SubmittedAt", "MessageID", "ErrorCode", "Message"
        }  # fmt: skip
    assert answers[4]["Message"].startswith("Message OK, but will not deliver to these inactive")
    ids = {answers[i]["MessageID"] for i in (0, 4, 6)}
    assert {str(m) for m in OutboundMessage.objects.values_list("message_id", flat=True)} == ids
    assert Submission.objects.count() == 3 and not Bounce.objects.exists()


def test_a_batch_must_be_a_list_of_at_most_500(api):
    assert assert_error(post(api, "/email/batch", message()), 422, 402)
    text = assert_error(post(api, "/email/batch", [message()] * 501), 422, 410)
    assert text == "A batch may hold at most 500 messages; this one has 501."
    assert sent(api, [], path="/email/batch") == []
    assert nothing_stored()


def test_an_oversized_item_fails_alone(api, settings):
    settings.SMTP_MAX_MESSAGE_SIZE = 10_000
    answers = sent(api, [message(TextBody="x" * 20_000), message()], path="/email/batch")
    assert [a["ErrorCode"] for a in answers] == [413, 0]


def test_an_item_the_database_refuses_fails_alone(api, monkeypatch):
    """Batching is for speed, never for failure: one refused row, the others stored."""
    taken = sent(api, message())["MessageID"]
    original = processing.outbound_message

    def poisoned(submission, *args):
        made = original(submission, *args)
        if made.subject == "poison":
            made.message_id = taken  # unique: the database refuses the row
        return made

    monkeypatch.setattr(processing, "outbound_message", poisoned)
    answers = sent(api, [message(), message(Subject="poison"), message()], path="/email/batch")
    assert [a["ErrorCode"] for a in answers] == [0, 500, 0]
    assert answers[1]["Message"].startswith("The message could not be stored (")
    assert OutboundMessage.objects.count() == 3 and Submission.objects.count() == 3


def test_a_batch_costs_a_fixed_number_of_queries(api, outbound):
    suppress(outbound, "gone@example.net", "HardBounce", "Recipient")

    def queries(count: int) -> tuple[int, int]:
        """(queries other than INSERT, INSERTs) of one batch of ``count`` messages."""
        batch = [message(To=f"u{i}@example.net, gone@example.net", Cc=f"c{i}@example.net")
                 for i in range(count)]  # fmt: skip
        with CaptureQueriesContext(connection) as captured:
            answers = sent(api, batch, path="/email/batch")
        assert all(a["ErrorCode"] == 0 for a in answers)
        sql = [q["sql"].lstrip().upper() for q in captured.captured_queries]
        inserts = sum(1 for q in sql if q.startswith("INSERT"))
        return len(sql) - inserts, inserts

    (small, small_inserts), (large, large_inserts) = queries(5), queries(50)
    # Token, stream, suppressions, savepoints: the same for 5 messages as for 50.
    assert small == large <= 10, (small, large)
    if connection.vendor == "sqlite":  # Django's bulk insert splits at 999 parameters
        assert small_inserts <= 3 and large_inserts <= 6
    # On PostgreSQL the three inserts (submissions, messages, recipients) go through psycopg
    # itself, with server-side binding (messages.submissions.insert_rows), unseen here.
    assert Recipient.objects.count() == 110


def test_http_messages_are_held_to_the_sending_limits(api, server):
    """(This test said the opposite before issue 22: /email was not held to the server's sending
    limits.) Items over the limit fail alone, with ErrorCode 429; they count as SMTP's do."""
    from messages.limits import clear_cache, sending_use

    clear_cache()
    server.smtp_messages_per_minute = 10
    server.save()
    answers = sent(api, [message()] * 20, path="/email/batch")
    assert [a["ErrorCode"] for a in answers] == [0] * 10 + [429] * 10
    assert answers[10]["Message"] == (
        "Sending limit of this server reached (at most 10 message(s) per minute): try again later."
    )
    assert Submission.objects.count() == 10
    assert sending_use(server.pk).last_minute == 10
    clear_cache()


def test_the_admin_timeline_says_the_message_came_over_http(api):
    from stats.timeline import accepted_how

    sent(api, message())
    text = accepted_how(Submission.objects.get())
    assert text == "through the HTTP send API from 127.0.0.1 (Server API token, no TLS)"


def test_line_breaks_in_header_fields_become_spaces(api):
    body = message(
        Subject="a\r\nb\u2028c\x85d", Tag="t\nu", Headers=[{"Name": "X-A", "Value": "1\r\n2"}]
    )
    out = OutboundMessage.objects.get(message_id=sent(api, body)["MessageID"])
    assert out.subject == "a b c d" and out.tag == "t u"
    assert parsed(out)["X-A"] == "1 2"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/email", "/email/batch"])
def test_messages_are_parsed_before_the_transaction_that_stores_them(api, monkeypatch, path):
    """The send API judged (parsed, rewrote) its messages inside the request's transaction, which
    on SQLite holds the database's write lock every SMTP gateway's commit waits for."""
    from core import mime

    inside = []
    original = mime.fields

    def fields(header_block):
        if connection.in_atomic_block:
            inside.append(header_block[:40])
        return original(header_block)

    monkeypatch.setattr(mime, "fields", fields)
    body = message(Subject="é" * 1900) if path == "/email" else [message(), message()]
    response = post(api, path, body)
    assert response.status_code == 200, response.content
    assert inside == []
    assert OutboundMessage.objects.count() == (1 if path == "/email" else 2)
