"""Sending with templates through real HTTP (``live_server``) with Postmark's real clients —
django-anymail's Postmark backend, postmarker and postmark.js — each message then relayed by a
real Celery worker to a local SMTP sink: the delivered HTML shows the model's values, the
layout around them and the CSS inlined."""

import pytest
from django.core.mail import EmailMessage

from e2e.test_api_email_clients import (  # noqa: F401 - fixtures
    anymail,
    delivered,
    received,
    token,
)
from mailtemplates import services
from servers.models import AccountToken

pytestmark = pytest.mark.django_db(transaction=True)

LAYOUT = (
    "<html><head><style>.hi{color:red} @media (max-width:600px){.hi{color:blue}}</style></head>"
    '<body><div class="frame">{{{ @content }}}</div><footer>{{company}}</footer></body></html>'
)


@pytest.fixture
def welcome(server):
    services.create(server, {"name": "Base", "alias": "base", "templatetype": "Layout",
                             "htmlbody": LAYOUT, "textbody": "== {{{@content}}} =="})  # fmt: skip
    return services.create(server, {
        "name": "Welcome", "alias": "welcome", "subject": "Welcome, {{name}}",
        "htmlbody": '<p class="hi">Hello {{name}}</p>', "textbody": "Hello {{name}}",
        "layouttemplate": "base",
    })  # fmt: skip


def check_html(message, name: str, company: str = "ACME"):
    html = message.get_body(("html",)).get_content()
    assert f'<p class="hi" style="color: red;">Hello {name}</p>' in html, html
    assert '<div class="frame">' in html and f"<footer>{company}</footer>" in html
    assert "@media (max-width:600px)" in html
    assert message.get_body(("plain",)).get_content().strip() == f"== Hello {name} =="


def test_anymail_template_with_global_and_per_recipient_data(
    anymail,  # noqa: F811 - the fixture
    welcome,
    relay_sink,
    relaying_worker,
):
    message = EmailMessage(from_email="shop@example.com", to=["ok1@example.net"],
                           connection=anymail)  # fmt: skip
    message.template_id = "welcome"
    message.merge_global_data = {"name": "Ann", "company": "ACME"}
    message.send()
    [first_id] = {s.message_id for s in message.anymail_status.recipients.values()}
    assert delivered(first_id) == ["ok1@example.net"]
    to = ["ok2@example.net", "Bo <ok3@example.net>"]
    batch = EmailMessage(from_email="shop@example.com", to=to, connection=anymail)
    batch.template_id = welcome.pk
    batch.merge_global_data = {"company": "ACME"}
    batch.merge_data = {"ok2@example.net": {"name": "Cy"}, "ok3@example.net": {"name": "Bo"}}
    batch.send()  # anymail sends these through /email/batchWithTemplates
    statuses = batch.anymail_status.recipients
    assert {r: s.status for r, s in statuses.items()} == {
        "ok2@example.net": "sent", "ok3@example.net": "sent"
    }  # fmt: skip
    assert delivered(statuses["ok3@example.net"].message_id) == ["ok3@example.net"]
    messages = {str(m["To"]): m for m in received(relay_sink, 3)}
    assert str(messages["ok1@example.net"]["Subject"]) == "Welcome, Ann"
    check_html(messages["ok1@example.net"], "Ann")
    check_html(messages["ok2@example.net"], "Cy")
    check_html(messages["Bo <ok3@example.net>"], "Bo")


def test_postmarker_send_with_template(
    live_server,
    token,  # noqa: F811 - the fixture
    welcome,
    relay_sink,
    relaying_worker,
):
    from postmarker.core import PostmarkClient

    client = PostmarkClient(server_token=token, root_api_url=live_server.url + "/")
    answer = client.emails.send_with_template(
        TemplateId=welcome.pk, TemplateModel={"name": "<Zed>", "company": "Co"},
        From="shop@example.com", To="ok@example.net",
    )  # fmt: skip
    assert answer["ErrorCode"] == 0
    assert delivered(answer["MessageID"]) == ["ok@example.net"]
    [relayed] = received(relay_sink, 1)
    html = relayed.get_body(("html",)).get_content()
    assert '<p class="hi" style="color: red;">Hello &lt;Zed&gt;</p>' in html
    assert relayed.get_body(("plain",)).get_content().strip() == "== Hello <Zed> =="


def test_postmark_js_templates(
    live_server,
    token,  # noqa: F811 - the fixture
    server,
    other_server,
    welcome,
    relay_sink,
    relaying_worker,
    postmark_js,
):
    url = live_server.url
    created = postmark_js(url, "Server", token, "createTemplate", {
        "Name": "Receipt", "Alias": "receipt", "Subject": "Receipt {{number}}",
        "HtmlBody": "<p class=\"hi\">{{#each items}}<b>{{name}}</b>{{/each}}</p>",
        "TextBody": "{{#each items}}{{name}};{{/each}}", "LayoutTemplate": "base",
    })  # fmt: skip
    assert created["ok"], created
    assert created["result"]["Name"] == "Receipt"
    validated = postmark_js(url, "Server", token, "validateTemplate", {
        "Subject": "{{#company}}{{name}}{{/company}}", "HtmlBody": "{{#each x}}",
        "TestRenderModel": {"extra": 1},
    })  # fmt: skip
    assert validated["ok"], validated
    result = validated["result"]
    assert result["AllContentIsValid"] is False and result["HtmlBody"]["ContentIsValid"] is False
    assert result["Subject"]["RenderedContent"] == "name_Value"
    assert result["SuggestedTemplateModel"]["extra"] == 1
    one = postmark_js(url, "Server", token, "sendEmailWithTemplate", {
        "From": "shop@example.com", "To": "ok1@example.net", "TemplateAlias": "receipt",
        "TemplateModel": {"number": 7, "company": "ACME", "items": [{"name": "A"}, {"name": "B"}]},
    })  # fmt: skip
    assert one["ok"], one
    batch = postmark_js(url, "Server", token, "sendEmailBatchWithTemplates", [
        {"From": "shop@example.com", "To": "ok2@example.net", "TemplateAlias": "welcome",
         "TemplateModel": {"name": "Dee", "company": "ACME"}},
        {"From": "shop@example.com", "To": "ok3@example.net", "TemplateAlias": "nope",
         "TemplateModel": {}},
    ])  # fmt: skip
    assert batch["ok"], batch
    assert [r["ErrorCode"] for r in batch["result"]] == [0, 1101]
    assert delivered(one["result"]["MessageID"]) == ["ok1@example.net"]
    assert delivered(batch["result"][0]["MessageID"]) == ["ok2@example.net"]
    messages = {str(m["To"]): m for m in received(relay_sink, 2)}
    receipt = messages["ok1@example.net"]
    assert str(receipt["Subject"]) == "Receipt 7"
    assert '<p class="hi" style="color: red;"><b>A</b><b>B</b></p>' in (
        receipt.get_body(("html",)).get_content()
    )
    check_html(messages["ok2@example.net"], "Dee")
    account = AccountToken.issue("ops").token
    pushed = postmark_js(url, "Account", account, "pushTemplates", {
        "SourceServerID": server.pk, "DestinationServerID": other_server.pk,
        "PerformChanges": False,
    })  # fmt: skip
    assert pushed["ok"], pushed
    assert pushed["result"]["TotalCount"] == 3
    assert {t["Action"] for t in pushed["result"]["Templates"]} == {"Create"}
