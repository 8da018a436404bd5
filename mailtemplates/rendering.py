"""A message from a template: its Subject, HtmlBody and TextBody rendered with one model, the
Standard template's bodies inside its Layout's at ``{{{ @content }}}`` (compat §10.6), and the
HTML's ``<style>`` rules inlined into ``style`` attributes (``InlineCss``, compat §9.8).

CSS is inlined by css-inline with remote and local stylesheets never loaded (a ``<link>`` is
kept as it is, never followed) and at-rules such as media queries kept in a ``<style>`` block.
"""

from dataclasses import dataclass

import css_inline

from mailtemplates.mustachio import check_model, compile_template, tokenize

_INLINER = css_inline.CSSInliner(
    keep_at_rules=True, keep_link_tags=True, load_remote_stylesheets=False
)


@dataclass
class Rendered:
    subject: str
    html_body: str
    text_body: str


def placeholders(source: str) -> int:
    """How many content placeholders a layout body holds."""
    return sum(1 for kind, _, _ in tokenize(source, allow_content=True) if kind == "content")


def inline_css(html: str) -> str:
    if "<style" not in html.lower():
        return html  # nothing to inline: the HTML stays exactly as rendered
    try:
        return _INLINER.inline(html)
    except ValueError:  # CSS the inliner cannot read: the HTML as rendered
        return html


def render_part(source: str | None, model, escape: bool, layout: str | None = None) -> str:
    """One part rendered (raises TemplateError); a part the template lacks is ''."""
    if not source:
        return ""
    return compile_template(source, layout or None).render(model, escape)


def render_message(template, layout, model, inline: bool = True) -> Rendered:
    """``template`` (and ``layout``, a Layout template or None) rendered with ``model``;
    raises TemplateError (mailtemplates.mustachio) for a template or model that cannot be."""
    check_model(model)
    html = render_part(template.html_body, model, True, layout and layout.html_body)
    text = render_part(template.text_body, model, False, layout and layout.text_body)
    if html and inline:
        html = inline_css(html)
    subject = render_part(template.subject, model, False)
    return Rendered(subject=subject, html_body=html, text_body=text)
