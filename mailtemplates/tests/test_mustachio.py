"""Mustachio's semantics (compat §10), case by case: escaping, sections, inverted sections,
each, ../, comments, printing, parse errors with their positions, and the caps."""

import pytest

from mailtemplates.inference import deep_merge, suggested_model
from mailtemplates.mustachio import (
    RenderError,
    TemplateSyntaxError,
    compile_template,
    dotnet_float,
    parse,
)
from mailtemplates.rendering import placeholders, render_message

pytestmark = pytest.mark.no_db

MODEL = {
    "name": "<Mike & 'Co'>",
    "accent": "é😀",
    "person": {"first_name": "Ann", "empty": {}},
    "items": [1, "two", {"x": "X"}],
    "none": [],
    "zero": 0,
    "fzero": 0.0,
    "blank": "",
    "no": False,
    "yes": True,
    "five": 5.0,
    "half": 1.5,
    "big": 1e20,
    "tiny": 1e-5,
    "str_zero": "0",
    "str_false": "false",
    "english": True,
    "Company": {"ceo": {"last_name": "Smith", "products": ["a", "b"]}},
}

# (template, rendered as HtmlBody, rendered as TextBody/Subject)
CASES = [
    ("Hi {{name}}!", "Hi &lt;Mike &amp; &#39;Co&#39;&gt;!", "Hi <Mike & 'Co'>!"),
    ("{{ name }}", "&lt;Mike &amp; &#39;Co&#39;&gt;", "<Mike & 'Co'>"),
    ("{{{name}}}|{{& name}}|{{{ name }}}", "<Mike & 'Co'>|<Mike & 'Co'>|<Mike & 'Co'>", None),
    ("{{accent}}", "&#233;&#128512;", "é😀"),
    ("{{person.first_name}}", "Ann", "Ann"),
    ("{{missing}}|{{person.missing.deeper}}", "|", None),
    ("{{person}}|{{items}}", "|", None),
    (
        "{{yes}} {{no}} {{five}} {{half}} {{big}} {{tiny}} {{zero}}",
        "True False 5 1.5 1E+20 1E-05 0",
        None,
    ),
    # Sections: the value becomes the scope, and names are looked up there only.
    ("{{#person}}{{first_name}}{{/person}}", "Ann", None),
    ("{{#english}}[{{name}}]{{/english}}", "[]", None),
    ("{{#english}}{{../person.first_name}}{{/english}}", "Ann", None),
    ("{{#items}}once{{/items}}", "once", None),  # a list is not iterated
    # Truthiness.
    *[
        (f"{{{{#{key}}}}}T{{{{/{key}}}}}{{{{^{key}}}}}F{{{{/{key}}}}}", expected, None)
        for key, expected in [
            ("missing", "F"),
            ("zero", "F"),
            ("fzero", "F"),
            ("blank", "F"),
            ("no", "F"),
            ("none", "F"),
            ("person.empty", "F"),
            ("yes", "T"),
            ("str_zero", "T"),
            ("str_false", "T"),
            ("person", "T"),
            ("items", "T"),
        ]
    ],
    ("{{#yes}}a{{^yes}}b{{/yes}}|{{#no}}a{{^no}}b{{/no}}", "a|b", None),  # if/else
    # each: the item is the scope, {{.}} the item, ../ the list, ../../ the list's owner.
    ("{{#each items}}[{{.}}]{{/each}}", "[1][two][]", None),
    ("{{#each items}}{{x}}{{/each}}", "X", None),
    ("{{#each none}}x{{/each}}{{#each missing}}x{{/each}}", "", None),
    (
        "{{#each Company.ceo.products}}{{.}} {{../../last_name}}|{{../last_name}};{{/each}}",
        "a Smith|;b Smith|;",
        None,
    ),
    ("{{../../../name}}", "&lt;Mike &amp; &#39;Co&#39;&gt;", None),  # extra ../ at the root
    # Comments and literal text.
    ("a{{! a comment\nover lines }}b", "ab", None),
    ("{{{{name}}", "{{&lt;Mike &amp; &#39;Co&#39;&gt;", "{{<Mike & 'Co'>"),
    ("\n{{#yes}}\n  x\n{{/yes}}\n", "\n\n  x\n\n", None),  # no standalone-line removal
    ("{{this}}{{this.name}}", "", None),  # 'this' is a key like any other
]


@pytest.mark.parametrize(("source", "html", "text"), CASES)
def test_rendering(source, html, text):
    assert compile_template(source).render(MODEL, escape=True) == html
    assert compile_template(source).render(MODEL, escape=False) == (
        text if text is not None else html.replace("&lt;", "<").replace("&gt;", ">")
        .replace("&amp;", "&").replace("&#39;", "'")
    )  # fmt: skip


ERRORS = [
    ("{{#each}}x", "The 'each' block being opened requires a model path", (1, 1)),
    ("{{#eachday}}x{{/eachday}}", "The 'each' block being opened requires a model path", (1, 1)),
    (
        "{{#each a}}x{{/each a}}",
        "The syntax to close the 'each' block should be: '{{/each}}'.",
        (1, 13),
    ),
    ("x\n {{/each}}", "An 'each' block is being closed, but no corresponding opening", (2, 2)),
    ("{{#a}}\n\n   {{/b}}", "It appears that open and closing elements are mismatched.", (3, 4)),
    ("ab\n{{#a}}", "A scope block to the following path was opened but not closed: 'a'", (2, 1)),
    ("{{first name}}", "The path 'first name' is not valid.", (1, 1)),
    ("{{first-name}}", "The path 'first-name' is not valid.", (1, 1)),
    ("{{ #x}}", "The path '#x' is not valid.", (1, 1)),
    ("{{@index}}", "The path '@index' is not valid.", (1, 1)),
    ("{{> partial}}", "The path '> partial' is not valid.", (1, 1)),
    ("{{{ @content }}}", "The path '@content' is not valid.", (1, 1)),  # outside a layout
]


@pytest.mark.parametrize(("source", "message", "where"), ERRORS)
def test_parse_errors(source, message, where):
    with pytest.raises(TemplateSyntaxError) as raised:
        parse(source)
    found = [(p.line, p.character) for p in raised.value.problems if p.message.startswith(message)]
    assert found == [where]


def test_every_error_is_reported_in_order():
    with pytest.raises(TemplateSyntaxError) as raised:
        parse("{{a b}}\n{{/x}}{{c d}}")
    assert [(p.line, p.character) for p in raised.value.problems] == [(1, 1), (2, 1), (2, 7)]


@pytest.mark.parametrize(
    ("value", "text"),
    [(5.0, "5"), (1.5, "1.5"), (1e20, "1E+20"), (1e15, "1E+15"), (1e14, "100000000000000"),
     (1e-5, "1E-05"), (0.0001, "0.0001"), (-2.25, "-2.25"), (0.1 + 0.2, "0.30000000000000004")],
)  # fmt: skip
def test_floats_print_as_dotnet_does(value, text):
    assert dotnet_float(value) == text


def test_each_over_an_object_is_a_render_error():
    with pytest.raises(RenderError, match="'person' is used like an array"):
        compile_template("{{#each person}}x{{/each}}").render(MODEL, escape=True)


def test_caps(settings):
    settings.TEMPLATE_MAX_NESTING = 3
    with pytest.raises(TemplateSyntaxError, match="nested at most 3"):
        parse("{{#a}}{{#b}}{{#c}}{{#d}}{{/d}}{{/c}}{{/b}}{{/a}}")
    settings.TEMPLATE_MAX_RENDERED_SIZE = 100
    with pytest.raises(RenderError, match="larger than the limit of 100"):
        compile_template("{{#each items}}" + "x" * 40 + "{{/each}}").render(MODEL, escape=True)
    settings.TEMPLATE_MAX_RENDER_STEPS = 1000
    nested = "{{#each l}}{{#each ../../l}}{{#each ../../../../l}}{{/each}}{{/each}}{{/each}}"
    with pytest.raises(RenderError, match="more than 1000 steps"):
        compile_template(nested).render({"l": list(range(50))}, escape=True)
    settings.TEMPLATE_MAX_MODEL_VALUES = 10

    class T:
        subject, html_body, text_body = "s", "h", None

    with pytest.raises(RenderError, match="more than 10 values"):
        render_message(T, None, {"a": list(range(20))})


def test_layouts_wrap_at_the_placeholder_before_rendering():
    class Layout:
        html_body = "<html><head><style>p{color:red} @media (max-width:600px){p{color:blue}}</style></head><body>{{#company}}{{{ @content }}}{{/company}}</body></html>"  # noqa: E501
        text_body = "header {{{@content}}} footer"

    class Welcome:
        subject = "Hi {{name}} & co"
        html_body = "<p>{{name}}</p>"
        text_body = "Mr. {{name}}"

    model = {"company": {"name": "<Acme>"}, "name": "<Top>"}
    rendered = render_message(Welcome, Layout, model)
    assert rendered.subject == "Hi <Top> & co"
    assert '<p style="color: red;">&lt;Acme&gt;</p>' in rendered.html_body
    assert "@media (max-width:600px)" in rendered.html_body
    assert rendered.text_body == "header Mr. <Top> footer"
    assert placeholders(Layout.html_body) == 1
    assert placeholders("no placeholder {{x}}") == 0
    plain = render_message(Welcome, Layout, model, inline=False).html_body
    assert "<style>" in plain


def test_suggested_model():
    trees = [
        parse("{{#company}}{{name}}{{/company}} {{subjectHeadline}}"),
        parse("{{#each person}}{{name}}{{/each}}{{#each tags}}{{.}}{{/each}}{{#flag}}{{/flag}}"),
        parse("{{#each Company.products}}{{../owner}}{{/each}}{{a.b.c}}"),
    ]
    suggested = suggested_model(trees)
    assert suggested == {
        "company": {"name": "name_Value"},
        "subjectHeadline": "subjectHeadline_Value",
        "person": [{"name": "name_Value"}],
        "tags": ["tags_1", "tags_2", "tags_3"],
        "flag": {},
        "Company": {"products": ["products_1", "products_2", "products_3"], "owner": "owner_Value"},
        "a": {"b": {"c": "c_Value"}},
    }
    assert deep_merge(suggested, {"userName": "bobby joe", "company": {"name": "X"}})[
        "company"
    ] == {"name": "X"}
