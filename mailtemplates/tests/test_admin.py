"""The templates admin through Django's test client: the list per server, adding and editing
(the Templates API's refusals, syntax errors at their line), the preview (the sandboxed frame's
document under its Content-Security-Policy, the text and problems beside it), deleting as the
API does, pushing between servers (the dry run's diff changes nothing), and what a view-only or
limited staff user may not do."""

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from mailtemplates import services
from mailtemplates.admin import PREVIEW_CSP
from mailtemplates.models import Template
from servers.models import StaffServerAccess
from streams.services import create_server

pytestmark = pytest.mark.django_db

LAYOUT_HTML = (
    "<html><head><style>p { color: red } @media (max-width: 600px) { p { color: blue } }</style>"
    "</head><body>{{{ @content }}}<footer>{{ company }}</footer></body></html>"
)
LIST = reverse("admin:mailtemplates_template_changelist")
ADD = reverse("admin:mailtemplates_template_add")
PUSH = reverse("admin:mailtemplates_template_push")


def change(template):
    return reverse("admin:mailtemplates_template_change", args=[template.pk])


def preview_urls(template=None):
    if template is None:
        return (
            reverse("admin:mailtemplates_template_preview"),
            reverse("admin:mailtemplates_template_preview_html"),
        )
    return (
        reverse("admin:mailtemplates_template_object_preview", args=[template.pk]),
        reverse("admin:mailtemplates_template_object_preview_html", args=[template.pk]),
    )


def make(server, **fields):
    return services.create(server, {k.lower(): v for k, v in fields.items()})


@pytest.fixture
def shop(server):
    layout = make(server, Name="Base", Alias="base", TemplateType="Layout", HtmlBody=LAYOUT_HTML,
                  TextBody="-- {{{ @content }}} --")  # fmt: skip
    welcome = make(server, Name="Welcome", Alias="welcome", Subject="Hi {{ name }}",
                   HtmlBody="<p>Hello {{ name }}</p>", TextBody="Hello {{ name }}",
                   LayoutTemplate="base")  # fmt: skip
    return {"server": server, "layout": layout, "welcome": welcome}


def staff(username, *servers, view_only=False, all_servers=False):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    permissions = Permission.objects.filter(content_type__app_label="mailtemplates")
    if view_only:
        permissions = permissions.filter(codename__startswith="view_")
    user.user_permissions.set(permissions)
    access = StaffServerAccess.objects.create(user=user, all_servers=all_servers)
    access.servers.set(servers)
    client = Client()
    client.force_login(user)
    return client


def form_of(template, **changes):
    data = {
        "name": template.name,
        "alias": template.alias,
        "layout_template": template.layout_template,
        "subject": template.subject or "",
        "html_body": template.html_body or "",
        "text_body": template.text_body or "",
    }
    if template.is_layout:
        del data["layout_template"], data["subject"]
    return {**data, **changes}


def listed(client, query="") -> set[str]:
    page = client.get(f"{LIST}?{query}").content.decode()
    return set(re.findall(r'<th class="field-name"><a href="[^"]*">([^<]*)</a>', page))


def snapshot(server):
    fields = ("alias", "name", "subject", "html_body", "text_body", "layout_template", "active")
    return sorted(Template.objects.filter(server=server).values_list(*fields))


# --- The list, adding and editing -----------------------------------------------------------


def test_the_list_shows_each_servers_templates_and_layouts(admin_client, shop, other_server):
    make(other_server, Name="Receipt", Alias="receipt", Subject="R", HtmlBody="<p>r</p>")
    gone = make(shop["server"], Name="Old news", Alias="old", Subject="O", TextBody="o")
    services.delete(gone)
    assert listed(admin_client) == {"Welcome", "Base", "Receipt"}  # not the deleted one
    assert listed(admin_client, f"server__id__exact={shop['server'].pk}") == {"Welcome", "Base"}
    assert listed(admin_client, "template_type__exact=Layout") == {"Base"}
    assert listed(admin_client, "state=deleted") == {"Old news"}  # kept, inactive
    page = admin_client.get(LIST).content.decode()
    assert f'href="{PUSH}"' in page
    assert 'id="nav-templates"' in page


def test_adding_a_layout_and_a_template_that_uses_it(admin_client, server):
    response = admin_client.post(ADD, {
        "server": server.pk, "template_type": "Layout", "name": "Frame", "alias": "",
        "html_body": "<div>{{{ @content }}}</div>", "text_body": "",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()
    layout = Template.objects.get(name="Frame")
    assert layout.is_layout and layout.alias == f"layout-{layout.pk}"  # as the API names it
    response = admin_client.post(ADD, {
        "server": server.pk, "template_type": "Standard", "name": "Reset", "alias": "reset",
        "layout_template": layout.alias, "subject": "Reset for {{ name }}",
        "html_body": "<p>\r\n{{ name }}\r\n</p>\r\n", "text_body": "",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()
    reset = Template.objects.get(alias="reset")
    assert reset.layout_template == layout.alias and reset.server == server
    assert reset.html_body == "<p>\n{{ name }}\n</p>\n"  # the textarea's lines, kept whole


def test_editing_a_layouts_alias_follows_its_users(admin_client, shop):
    response = admin_client.post(change(shop["layout"]), form_of(shop["layout"], alias="frame"))
    assert response.status_code == 302, response.content.decode()
    shop["welcome"].refresh_from_db()
    assert shop["welcome"].layout_template == "frame"
    page = admin_client.get(change(shop["welcome"])).content.decode()
    assert '<option value="frame" selected>Base (frame)</option>' in page


@pytest.mark.parametrize(
    ("field", "source", "line", "character", "message"),
    [
        ("html_body", "<p>\n  ok {{ name }}\n  {{#each items}}{{.}}\n</p>", 3, 3,
         "A scope block to the following path was opened but not closed: 'items'"),
        ("text_body", "one\ntwo {{#a}}x{{/b}}", 2, 12,
         "It appears that open and closing elements are mismatched."),
        ("subject", "Hi {{ a b }}", 1, 4, "The path 'a b' is not valid."),
    ],
)  # fmt: skip
def test_syntax_errors_are_shown_at_their_line(admin_client, shop, field, source, line,
                                               character, message):  # fmt: skip
    before = snapshot(shop["server"])
    response = admin_client.post(
        change(shop["welcome"]), form_of(shop["welcome"], **{field: source})
    )
    assert response.status_code == 200
    page = response.content.decode().replace("&#x27;", "'")
    errors = re.search(rf'<div class="form-row[^"]*field-{field}.*?</div>', page, re.S).group()
    assert f"Line {line}, character {character}: " in errors and message in errors
    # The preview panel places it too, quoting the line under which a caret points at it.
    excerpt = source.split("\n")[line - 1]
    marker = " " * (character - 1) + "^"
    assert f'data-field="{field}" data-line="{line}"' in page
    assert f'<pre class="pm-excerpt">{excerpt}\n{marker}</pre>' in page
    assert snapshot(shop["server"]) == before


@pytest.mark.parametrize(
    ("target", "changes", "message"),
    [
        ("layout", {"html_body": "<div>no placeholder</div>"}, services.PLACEHOLDER_MESSAGE),
        ("welcome", {"alias": "base"}, "The alias 'base' is already used by a template."),
        ("welcome", {"layout_template": "nowhere"}, "Select a valid choice."),
        ("welcome", {"subject": ""}, "The 'Subject' field is required."),
    ],
)
def test_the_apis_refusals_are_the_forms(admin_client, shop, target, changes, message):
    before = snapshot(shop["server"])
    response = admin_client.post(change(shop[target]), form_of(shop[target], **changes))
    assert response.status_code == 200
    assert message in response.content.decode().replace("&#x27;", "'")
    assert snapshot(shop["server"]) == before


def test_a_full_server_takes_no_more_templates(admin_client, server, settings):
    settings.TEMPLATES_PER_SERVER = 1
    make(server, Name="Only", Subject="s", TextBody="t")
    response = admin_client.post(ADD, {
        "server": server.pk, "template_type": "Standard", "name": "More", "subject": "s",
        "text_body": "t",
    })  # fmt: skip
    assert "A server may hold at most 1 templates" in response.content.decode()
    assert Template.objects.filter(server=server).count() == 1


# --- The preview --------------------------------------------------------------------------


def test_the_saved_preview_is_a_sandboxed_document_under_a_strict_csp(admin_client, shop):
    page = admin_client.get(change(shop["welcome"])).content.decode()
    frame = re.search(r"<iframe[^>]*>", page).group()
    assert 'sandbox=""' in frame
    _, html_url = preview_urls(shop["welcome"])
    assert f'src="{html_url}"' in frame
    # The text and subject are beside it, rendered with the suggested model.
    assert '<pre class="pm-code pm-preview-text" id="preview-text">-- Hello name_Value --' in page
    assert "Hi name_Value" in page
    response = admin_client.get(html_url)
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == PREVIEW_CSP
    assert "default-src 'none'; style-src 'unsafe-inline'; img-src data:" in PREVIEW_CSP
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["Content-Type"] == "text/html; charset=utf-8"
    body = response.content.decode()
    # In the layout, CSS inlined (the media query kept); the model suggested by the template's
    # paths, as POST /templates/validate suggests it, leaves the layout's own paths empty.
    assert '<p style="color: red;">Hello name_Value</p><footer></footer>' in body
    assert "<style>@media (max-width: 600px)" in body


def test_a_draft_is_previewed_with_the_test_model(admin_client, shop):
    json_url, html_url = preview_urls(shop["welcome"])
    draft = form_of(shop["welcome"], html_body='<p>Dear {{ name }}<img src="https://t.example/x.gif"></p>',
                    preview_model='{"name": "Ada <3", "company": "ACME"}',
                    preview_inline_css="on")  # fmt: skip
    response = admin_client.post(html_url, draft)
    assert response["Content-Security-Policy"] == PREVIEW_CSP  # the remote image is not loaded
    body = response.content.decode()
    assert '<p style="color: red;">Dear Ada &lt;3<img src="https://t.example/x.gif"></p>' in body
    assert "<footer>ACME</footer>" in body
    del draft["preview_inline_css"]  # the box unticked: the HTML as rendered
    assert "<p>Dear Ada &lt;3" in admin_client.post(html_url, draft).content.decode()
    data = admin_client.post(json_url, draft).json()
    assert data == {
        "valid": True, "subject": "Hi Ada <3", "text": "-- Hello Ada <3 --", "problems": [],
        "suggested_model": {"name": "Ada <3", "company": "ACME"},
    }  # fmt: skip
    assert Template.objects.get(pk=shop["welcome"].pk).html_body == "<p>Hello {{ name }}</p>"


def test_the_preview_lists_problems_at_their_line(admin_client, shop):
    json_url, html_url = preview_urls(shop["welcome"])
    draft = form_of(shop["welcome"], html_body="<p>\n\t{{#each}}\n</p>", text_body="{{ a..b }}",
                    preview_model="[1, 2]")  # fmt: skip
    data = admin_client.post(json_url, draft).json()
    assert data["valid"] is False and data["subject"] == "Hi name_Value"
    problems = {p["field"]: p for p in data["problems"]}
    assert problems["preview_model"]["message"] == "The test model must be a JSON object."
    html = problems["html_body"]
    assert (html["line"], html["character"], html["where"]) == (
        2,
        2,
        "HTML body, line 2, character 2",
    )
    assert html["excerpt"] == "\t{{#each}}" and html["marker"] == "\t^"
    assert problems["text_body"]["line"] == 1
    body = admin_client.post(html_url, draft).content.decode()
    assert "Not rendered: see the problems beside the preview." in body


def test_the_add_page_previews_a_draft_of_the_chosen_server(admin_client, shop):
    json_url, html_url = preview_urls()
    page = admin_client.get(ADD).content.decode()
    assert 'sandbox=""' in page and f'data-preview-url="{json_url}"' in page
    draft = {"server": shop["server"].pk, "template_type": "Standard", "subject": "S",
             "html_body": "<p>{{ x }}</p>", "layout_template": "base"}  # fmt: skip
    body = admin_client.post(html_url, draft).content.decode()
    assert "<p>x_Value</p><footer></footer></body>" in body and "<style>" in body  # its layout
    other = create_server("Elsewhere")
    data = admin_client.post(json_url, {**draft, "server": other.pk}).json()
    assert data["problems"][0]["field"] == "layout_template"
    assert admin_client.get(html_url).status_code == 404  # drafts are posted, never in a URL


def test_the_preview_needs_the_csrf_token(shop):
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    json_url, html_url = preview_urls(shop["welcome"])
    assert client.post(json_url, form_of(shop["welcome"])).status_code == 403
    assert client.post(html_url, form_of(shop["welcome"])).status_code == 403


# --- Deleting -------------------------------------------------------------------------------


def test_a_layout_in_use_is_not_deleted_and_a_template_is_kept_inactive(admin_client, shop):
    delete = reverse("admin:mailtemplates_template_delete", args=[shop["layout"].pk])
    page = admin_client.get(delete).content.decode()
    assert "“Welcome” (welcome), which uses this layout" in page
    admin_client.post(delete, {"post": "yes"})
    assert Template.objects.get(pk=shop["layout"].pk).active
    admin_client.post(LIST, {"action": "delete_selected", "post": "yes",
                             "_selected_action": [shop["layout"].pk]})  # fmt: skip
    assert Template.objects.get(pk=shop["layout"].pk).active
    welcome = reverse("admin:mailtemplates_template_delete", args=[shop["welcome"].pk])
    assert admin_client.post(welcome, {"post": "yes"}).status_code == 302
    shop["welcome"].refresh_from_db()
    assert shop["welcome"].active is False  # as DELETE /templates/{id}: still answers GET
    admin_client.post(delete, {"post": "yes"})
    assert Template.objects.get(pk=shop["layout"].pk).active is False


# --- Pushing --------------------------------------------------------------------------------


@pytest.fixture
def two(shop, other_server):
    stale = make(other_server, Name="Welcome", Alias="welcome", Subject="Hi {{ name }}",
                 HtmlBody="<p>Hi {{ name }}</p>")  # fmt: skip
    make(other_server, Name="Mine only", Alias="mine", Subject="m", TextBody="m")
    return {**shop, "source": shop["server"], "destination": other_server, "stale": stale}


def test_the_dry_run_shows_the_diff_and_changes_nothing(admin_client, two):
    before = snapshot(two["destination"]), snapshot(two["source"])
    response = admin_client.get(PUSH, {"source": two["source"].pk,
                                       "destination": two["destination"].pk})  # fmt: skip
    page = response.content.decode()
    assert "2 changes" in page and "a dry run: nothing has changed yet" in page
    assert re.search(r"<strong class=\"pm-push-action\">Create</strong> Layout\s+“Base”", page)
    assert re.search(r"<strong class=\"pm-push-action\">Edit</strong> Standard\s+“Welcome”", page)
    assert '<span class="pm-diff-del">-&lt;p&gt;Hi {{ name }}&lt;/p&gt;</span>' in page
    assert '<span class="pm-diff-add">+&lt;p&gt;Hello {{ name }}&lt;/p&gt;</span>' in page
    assert '<span class="pm-diff-add">+Hello {{ name }}</span>' in page  # the new TextBody
    assert '<span class="pm-diff-add">+base</span>' in page  # its LayoutTemplate
    assert 'id="push-perform"' in page
    assert (snapshot(two["destination"]), snapshot(two["source"])) == before


def test_the_push_performs_what_the_diff_showed(admin_client, two):
    query = {"source": two["source"].pk, "destination": two["destination"].pk}
    page = admin_client.get(PUSH, query).content.decode()
    digest = re.search(r'name="plan" value="([0-9a-f]{64})"', page).group(1)
    response = admin_client.post(PUSH, {**query, "plan": digest})
    assert response.status_code == 302
    assert response["Location"].endswith(f"?server__id__exact={two['destination'].pk}")
    pushed = {t.alias: t for t in Template.objects.filter(server=two["destination"], active=True)}
    assert set(pushed) == {"base", "welcome", "mine"}
    assert pushed["welcome"].pk == two["stale"].pk and pushed["welcome"].layout_template == "base"
    assert pushed["welcome"].html_body == "<p>Hello {{ name }}</p>"
    messages = admin_client.get(response["Location"]).content.decode()
    assert "2 template(s) pushed from “Test server” to “Other server”." in messages
    again = admin_client.get(PUSH, query).content.decode()
    assert 'id="push-nothing"' in again and 'id="push-perform"' not in again


def test_a_push_is_refused_when_the_templates_changed_since_the_diff(admin_client, two):
    query = {"source": two["source"].pk, "destination": two["destination"].pk}
    page = admin_client.get(PUSH, query).content.decode()
    digest = re.search(r'name="plan" value="([0-9a-f]{64})"', page).group(1)
    services.edit(two["welcome"], {"htmlbody": "<p>Changed meanwhile</p>"})
    before = snapshot(two["destination"])
    page = admin_client.post(PUSH, {**query, "plan": digest}).content.decode()
    assert "The templates changed since the diff was shown" in page
    assert "+&lt;p&gt;Changed meanwhile&lt;/p&gt;" in page
    assert snapshot(two["destination"]) == before


def test_pushing_refusals(admin_client, two, server):
    page = admin_client.get(PUSH, {"source": server.pk, "destination": server.pk}).content
    assert "Choose two different servers." in page.decode()
    empty = create_server("Empty")
    page = admin_client.get(PUSH, {"source": empty.pk, "destination": server.pk}).content
    assert "The source server has no templates with an alias." in page.decode()


# --- Who may do what ------------------------------------------------------------------------


def test_a_view_only_user_sees_but_changes_nothing(two):
    viewer = staff("viewer", two["source"], two["destination"], view_only=True)
    welcome, layout = two["welcome"], two["layout"]
    before = snapshot(two["source"]), snapshot(two["destination"])
    assert listed(viewer) == {"Welcome", "Base", "Mine only"}
    page = viewer.get(change(welcome)).content.decode()
    assert 'name="_save"' not in page and 'name="html_body"' not in page
    assert 'sandbox=""' in page and 'id="preview-model"' not in page  # the saved preview only
    assert "Hi name_Value" in page
    json_url, html_url = preview_urls(welcome)
    assert viewer.get(html_url)["Content-Security-Policy"] == PREVIEW_CSP
    assert viewer.post(json_url, form_of(welcome)).status_code == 403
    assert viewer.post(html_url, form_of(welcome)).status_code == 403
    assert viewer.post(change(welcome), form_of(welcome, name="Hacked")).status_code == 403
    assert viewer.get(ADD).status_code == 403
    assert viewer.post(preview_urls()[0], {"server": two["source"].pk}).status_code == 403
    delete = reverse("admin:mailtemplates_template_delete", args=[layout.pk])
    assert viewer.post(delete, {"post": "yes"}).status_code == 403
    listing = viewer.get(LIST).content.decode()
    assert 'value="delete_selected"' not in listing
    viewer.post(
        LIST, {"action": "delete_selected", "post": "yes", "_selected_action": [welcome.pk]}
    )
    # The push: the dry run's diff, and no button; a posted push is refused.
    query = {"source": two["source"].pk, "destination": two["destination"].pk}
    page = viewer.get(PUSH, query).content.decode()
    assert "pm-diff-add" in page and 'id="push-perform"' not in page
    digest = re.search(r'name="plan" value="([0-9a-f]{64})"', two_digest(two)).group(1)
    assert viewer.post(PUSH, {**query, "plan": digest}).status_code == 403
    assert (snapshot(two["source"]), snapshot(two["destination"])) == before


def two_digest(two):
    admin = User.objects.create_superuser("digest", "d@example.com", "pw")
    client = Client()
    client.force_login(admin)
    query = {"source": two["source"].pk, "destination": two["destination"].pk}
    return client.get(PUSH, query).content.decode()


def test_a_limited_user_reaches_no_other_servers_templates(two):
    theirs = make(two["destination"], Name="Their-secret-template", Alias="secret", Subject="s",
                  TextBody="t")  # fmt: skip
    editor = staff("editor", two["source"])
    assert listed(editor) == {"Welcome", "Base"}
    assert "Their-secret-template" not in editor.get(LIST).content.decode()
    assert editor.get(change(theirs), follow=True).redirect_chain  # "doesn't exist" and back
    json_url, html_url = preview_urls(theirs)
    assert editor.get(html_url).status_code == 404
    assert editor.post(json_url, form_of(theirs)).status_code == 404
    page = editor.get(PUSH).content.decode()
    assert "Other server" not in page
    before = snapshot(two["destination"])
    query = {"source": two["source"].pk, "destination": two["destination"].pk}
    page = editor.post(PUSH, {**query, "plan": "0" * 64}).content.decode()
    assert "Select a valid choice" in page
    page = editor.get(PUSH, {"source": two["destination"].pk,
                             "destination": two["source"].pk}).content.decode()  # fmt: skip
    assert "Select a valid choice" in page and "Their-secret-template" not in page
    assert snapshot(two["destination"]) == before
    # Their own server: the editor edits and previews.
    response = editor.post(change(two["welcome"]), form_of(two["welcome"], name="Welcome 2"))
    assert response.status_code == 302
    assert editor.post(preview_urls(two["welcome"])[0], form_of(two["welcome"])).json()["valid"]
