"""The Templates API and sending with a template (compat §9), through Django's test client."""

import pytest
from django.test import Client

from mailtemplates.models import Template
from messages.models import OutboundMessage
from servers.models import AccountToken

pytestmark = pytest.mark.django_db

LAYOUT_HTML = (
    "<html><head><style>p{color:red} @media (max-width:600px){p{color:blue}}</style></head>"
    "<body>{{{ @content }}}<footer>{{company}}</footer></body></html>"
)


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


def call(client, method, path, body=None):
    response = getattr(client, method)(path, body, content_type="application/json")
    return response.status_code, response.json()


def make(api, **fields):
    status, body = call(api, "post", "/templates", fields)
    assert status == 200, body
    return body


def test_create_read_list_edit_delete(api, server):
    layout = make(api, Name="Base", TemplateType="Layout", HtmlBody=LAYOUT_HTML,
                  TextBody="head {{{@content}}} foot")  # fmt: skip
    assert layout["Alias"] == f"layout-{layout['TemplateId']}"  # generated: always referable
    welcome = make(api, Name="Welcome", Alias="welcome", Subject="Hi {{name}}",
                   HtmlBody="<p>{{name}}</p>", LayoutTemplate=layout["Alias"])  # fmt: skip
    assert welcome == {
        "TemplateId": welcome["TemplateId"], "Name": "Welcome", "Alias": "welcome",
        "Active": True, "TemplateType": "Standard", "LayoutTemplate": layout["Alias"],
    }  # fmt: skip
    status, full = call(api, "get", "/templates/WELCOME")
    assert status == 200 and full["HtmlBody"] == "<p>{{name}}</p>" and full["TextBody"] is None
    assert full["AssociatedServerId"] == server.pk and full["Subject"] == "Hi {{name}}"
    status, listed = call(api, "get", "/templates?count=10&offset=0&TemplateType=Layout")
    assert listed["TotalCount"] == 1 and listed["Templates"][0]["Name"] == "Base"
    status, listed = call(api, "get", f"/templates/?LayoutTemplate={layout['Alias']}")
    assert [t["Alias"] for t in listed["Templates"]] == ["welcome"]
    status, edited = call(api, "put", "/templates/welcome", {"Name": None, "Subject": "Yo"})
    assert status == 200 and edited["Name"] == "Welcome"
    status, body = call(api, "delete", f"/templates/{layout['TemplateId']}")
    assert (status, body["ErrorCode"]) == (422, 1130)
    status, edited = call(api, "put", "/templates/welcome", {"LayoutTemplate": ""})
    assert edited["LayoutTemplate"] is None
    status, body = call(api, "delete", f"/templates/{layout['TemplateId']}")
    assert body == {"ErrorCode": 0, "Message": f"Template {layout['TemplateId']} removed."}
    status, gone = call(api, "get", f"/templates/{layout['TemplateId']}")
    assert status == 200 and gone["Active"] is False
    status, body = call(api, "delete", f"/templates/{layout['TemplateId']}")
    assert (status, body["ErrorCode"]) == (422, 1101)
    status, listed = call(api, "get", "/templates?count=10&offset=0")
    assert listed["TotalCount"] == 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"Subject": "s", "HtmlBody": "x"}, 1120),  # no Name
        ({"Name": "n", "HtmlBody": "x"}, 1120),  # no Subject
        ({"Name": "n", "Subject": "s"}, 1120),  # no body
        ({"Name": "n", "Subject": "s", "HtmlBody": "{{#a}}"}, 1122),  # unparsable
        ({"Name": "n", "Subject": "s", "HtmlBody": "x", "Alias": "1abc"}, 1122),
        ({"Name": "n", "Subject": "s", "HtmlBody": "x", "LayoutTemplate": "none"}, 1101),
        ({"Name": "n", "TemplateType": "Layout", "HtmlBody": "no placeholder"}, 1131),
        ({"Name": "n", "TemplateType": "Layout", "HtmlBody": "{{{@content}}}{{{@content}}}"}, 1131),
        (
            {"Name": "n", "TemplateType": "Layout", "Subject": "s", "HtmlBody": "{{{@content}}}"},
            1123,
        ),
        ({"Name": "n", "TemplateType": "Bad", "HtmlBody": "x"}, 1122),
    ],
)
def test_create_refusals(api, fields, code):
    status, body = call(api, "post", "/templates", fields)
    assert (status, body["ErrorCode"]) == (422, code), body


def test_alias_unique_in_any_case_and_the_limit(api, settings):
    make(api, Name="A", Alias="Welcome", Subject="s", TextBody="t")
    status, body = call(api, "post", "/templates", {"Name": "B", "Alias": "welcome",
                                                    "Subject": "s", "TextBody": "t"})  # fmt: skip
    assert body["ErrorCode"] == 1122
    settings.TEMPLATES_PER_SERVER = 1
    status, body = call(api, "post", "/templates", {"Name": "C", "Subject": "s", "TextBody": "t"})
    assert (status, body["ErrorCode"]) == (422, 1105)
    status, body = call(api, "get", "/templates/nope")
    assert (status, body["ErrorCode"]) == (422, 1101)
    status, body = call(api, "get", "/templates?count=0&offset=0")
    assert body["ErrorCode"] == 1100


def test_validate(api):
    status, body = call(api, "post", "/templates/validate", {"Subject": "Test", "TextBody": "Test"})
    assert body == {
        "AllContentIsValid": True, "HtmlBody": None,
        "TextBody": {"ContentIsValid": True, "ValidationErrors": [], "RenderedContent": "Test"},
        "Subject": {"ContentIsValid": True, "ValidationErrors": [], "RenderedContent": "Test"},
        "SuggestedTemplateModel": {},
    }  # fmt: skip
    status, body = call(api, "post", "/templates/validate", {
        "Subject": "{{#company}}{{name}}{{/company}} {{subjectHeadline}}",
        "HtmlBody": "<style>p{color:red}</style><p>{{userName}}</p>\n  {{/x}}",
        "TestRenderModel": {"userName": "bobby joe"},
    })  # fmt: skip
    assert body["AllContentIsValid"] is False
    assert body["Subject"]["RenderedContent"] == "name_Value subjectHeadline_Value"
    assert body["HtmlBody"]["ValidationErrors"] == [
        {"Message": "It appears that open and closing elements are mismatched.",
         "Line": 2, "CharacterPosition": 3}
    ]  # fmt: skip
    assert body["SuggestedTemplateModel"] == {
        "company": {"name": "name_Value"}, "subjectHeadline": "subjectHeadline_Value",
        "userName": "bobby joe",
    }  # fmt: skip
    status, body = call(
        api,
        "post",
        "/templates/validate",
        {"HtmlBody": "<style>p{color:red}</style><p>{{userName}}</p>"},
    )  # noqa: E501
    assert '<p style="color: red;">userName_Value</p>' in body["HtmlBody"]["RenderedContent"]


def test_push_dry_run_then_for_real(server, other_server, api):
    make(api, Name="Base", Alias="base", TemplateType="Layout", HtmlBody="[{{{@content}}}]")
    make(api, Name="Welcome", Alias="welcome", Subject="s", HtmlBody="x", LayoutTemplate="base")
    make(api, Name="No alias", Subject="s", HtmlBody="x")
    account = Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=AccountToken.issue("ops").token)
    body = {"SourceServerID": str(server.pk), "DestinationServerID": other_server.pk,
            "PerformChanges": False}  # fmt: skip
    status, dry = call(account, "put", "/templates/push", body)
    assert status == 200 and dry["TotalCount"] == 2
    assert [(t["Action"], t["Alias"], t["TemplateType"]) for t in dry["Templates"]] == [
        ("Create", "base", "Layout"), ("Create", "welcome", "Standard")
    ]  # fmt: skip
    assert not Template.objects.filter(server=other_server).exists()
    status, done = call(account, "put", "/templates/push", {**body, "PerformChanges": True})
    assert done == dry
    assert Template.objects.filter(server=other_server).count() == 2
    status, again = call(account, "put", "/templates/push", {**body, "PerformChanges": True})
    assert again == {"TotalCount": 0, "Templates": []}
    body = {**body, "SourceServerID": 999999, "DestinationServerID": 999998}
    status, body = call(account, "put", "/templates/push", body)
    assert body == {
        "ErrorCode": 601,
        "Message": "The source and destination servers were not found.",
    }
    status, body = call(api, "put", "/templates/push", body)
    assert status == 401


@pytest.fixture
def welcome(api):
    make(api, Name="Base", Alias="base", TemplateType="Layout", HtmlBody=LAYOUT_HTML,
         TextBody="head {{{@content}}} foot")  # fmt: skip
    return make(api, Name="Welcome", Alias="welcome", Subject="Hi {{name}}",
                HtmlBody="<p>Hello {{name}}</p>", TextBody="Hello {{name}}",
                LayoutTemplate="base")  # fmt: skip


def _stored(message_id):
    from api.tests.test_api_email import parsed

    return parsed(OutboundMessage.objects.get(message_id=message_id))


def test_send_with_template(api, welcome):
    status, body = call(api, "post", "/email/withTemplate/", {
        "From": "shop@example.com", "To": "ok@example.net", "TemplateAlias": "welcome",
        "TemplateModel": {"name": "<Ann>", "company": "ACME"}, "Subject": None, "Tag": "t",
    })  # fmt: skip
    assert status == 200 and body["ErrorCode"] == 0, body
    message = _stored(body["MessageID"])
    assert message["Subject"] == "Hi <Ann>"
    assert OutboundMessage.objects.get(message_id=body["MessageID"]).tag == "t"
    html = message.get_body(("html",)).get_content()
    assert '<p style="color: red;">Hello &lt;Ann&gt;</p>' in html and "@media" in html
    assert "<footer>ACME</footer>" in html
    assert message.get_body(("plain",)).get_content().strip() == "head Hello <Ann> foot"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"TemplateAlias": "nope", "TemplateModel": {}}, 1101),
        ({"TemplateId": 999999, "TemplateModel": {}}, 1101),
        ({"TemplateModel": {}}, 1101),
        ({"TemplateAlias": "base", "TemplateModel": {}}, 1122),  # a layout
        ({"TemplateAlias": "welcome"}, 1120),
        ({"TemplateAlias": "welcome", "TemplateModel": [1]}, 1122),
        ({"TemplateAlias": "welcome", "TemplateModel": {}, "HtmlBody": "x"}, 1123),
        ({"TemplateAlias": "welcome", "TemplateModel": {}, "To": "bad"}, 300),
    ],
)
def test_send_with_template_refusals(api, welcome, fields, code):
    status, body = call(api, "post", "/email/withTemplate",
                        {"From": "shop@example.com", "To": "ok@example.net", **fields})  # fmt: skip
    assert (status, body["ErrorCode"]) == (422, code), body


def test_batch_with_templates(api, welcome, settings):
    good = {"From": "shop@example.com", "TemplateAlias": "welcome", "TemplateModel": {"name": "A"}}
    status, body = call(api, "post", "/email/batchWithTemplates", {"Messages": [
        {**good, "To": "a@example.net"},
        {**good, "To": "b@example.net", "TemplateAlias": "missing"},
        {**good, "To": "c@example.net", "TemplateModel": {"name": "C"}},
    ]})  # fmt: skip
    assert status == 200
    assert [a["ErrorCode"] for a in body] == [0, 1101, 0]
    assert body[1]["To"] == "b@example.net"
    assert body[1]["Message"] == (
        "The Template's 'Alias' associated with this request is not valid or was not found."
    )
    assert _stored(body[2]["MessageID"])["Subject"] == "Hi C"
    status, body = call(api, "post", "/email/batchWithTemplates", {"Messages": [good] * 501})
    assert (status, body["ErrorCode"]) == (422, 410)
    settings.API_MAX_BATCH_REQUEST_SIZE = 1000
    status, body = call(api, "post", "/email/batchWithTemplates", {"Messages": [good] * 20})
    assert (status, body["ErrorCode"]) == (413, 413)
