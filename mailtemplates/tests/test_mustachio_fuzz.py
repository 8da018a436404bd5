"""Generated templates and models: rendering raises nothing but TemplateError, and never
renders past the caps."""

import contextlib
import os

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailtemplates.mustachio import TemplateError, compile_template
from mailtemplates.rendering import render_message

pytestmark = [pytest.mark.fuzz, pytest.mark.no_db]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 300)
NAMES = st.sampled_from(["a", "b", "items", "x.y", "../a", "../../b", ".", "each", " a ", ""])
PIECES = st.one_of(
    st.text(max_size=5),
    st.sampled_from(["{{", "}}", "{", "}", "{{{", "}}}", "\n", "@content", "#", "^", "/", "!"]),
    NAMES.map(lambda n: f"{{{{{n}}}}}"),
    NAMES.map(lambda n: f"{{{{{{{n}}}}}}}"),
    NAMES.map(lambda n: f"{{{{#{n}}}}}"),
    NAMES.map(lambda n: f"{{{{^{n}}}}}"),
    NAMES.map(lambda n: f"{{{{/{n}}}}}"),
    NAMES.map(lambda n: f"{{{{#each {n}}}}}"),
    st.just("{{/each}}"),
    st.just("{{{ @content }}}"),
)
TEMPLATES = st.lists(PIECES, max_size=30).map("".join)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "items", "x", "y", "each"]), inner, max_size=4)
    ),
    max_leaves=30,
)


class _Part:
    def __init__(self, html, text, subject):
        self.html_body, self.text_body, self.subject = html, text, subject


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(TEMPLATES, TEMPLATES, TEMPLATES, JSON)
def test_templates_and_models_fail_only_as_template_errors(html, layout, subject, model):
    from django.conf import settings as django_settings

    cap = django_settings.TEMPLATE_MAX_RENDERED_SIZE
    try:
        rendered = render_message(_Part(html, html, subject), _Part(layout, layout, None), model)
    except TemplateError:
        pass
    else:
        assert max(len(rendered.text_body), len(rendered.subject)) <= cap
    with contextlib.suppress(TemplateError):
        compile_template(html).render(model, escape=True)


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.sampled_from(["{{#each a}}", "{{#each ../../a}}", "x", "{{/each}}"]), max_size=40)
)
def test_nested_loops_stop_at_the_caps(pieces):
    source = "".join(pieces)
    with override_settings(TEMPLATE_MAX_RENDER_STEPS=20_000, TEMPLATE_MAX_RENDERED_SIZE=10_000):
        try:
            out = compile_template(source).render({"a": list(range(30))}, escape=True)
        except TemplateError:
            return
    assert len(out) <= 10_000
