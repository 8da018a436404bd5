"""A draft template rendered for the admin's editor: the same validation and rendering as
``POST /templates/validate`` (``services.validate``), with each problem placed at its line and
that line quoted, the test model read from the JSON the editor holds, and the HTML part as the
document the sandboxed preview frame shows.

Nothing here saves anything: a draft is checked and rendered, never stored."""

import json
from dataclasses import dataclass, field

from mailtemplates import services
from mailtemplates.services import TemplateProblem

# The parts of a template: the admin form's field, the API's name, the Preview's attribute.
PARTS = (
    ("subject", "Subject", "subject"),
    ("html_body", "HtmlBody", "html"),
    ("text_body", "TextBody", "text"),
)
LABELS = {
    "subject": "Subject",
    "html_body": "HTML body",
    "text_body": "Text body",
    "layout_template": "Layout",
    "preview_model": "Test model",
}
EXCERPT = 160  # characters of a problem's line quoted around its position


@dataclass
class Problem:
    field: str  # the form field ("html_body" …), or "" for the draft as a whole
    message: str
    line: int | None = None
    character: int | None = None
    excerpt: str = ""  # the line the problem is on, cut to EXCERPT characters around it
    caret: int = 0  # the problem's column within ``excerpt`` (0-based)

    @property
    def label(self) -> str:
        return LABELS.get(self.field, "Template")

    @property
    def marker(self) -> str:
        """A line under ``excerpt`` with ``^`` below the problem (tabs kept, to align)."""
        return "".join("\t" if c == "\t" else " " for c in self.excerpt[: self.caret]) + "^"

    def where(self) -> str:
        if self.line is None:
            return self.label
        return f"{self.label}, line {self.line}, character {self.character}"

    def as_json(self) -> dict:
        return {
            "field": self.field,
            "where": self.where(),
            "message": self.message,
            "line": self.line,
            "character": self.character,
            "excerpt": self.excerpt,
            "marker": self.marker if self.excerpt or self.line else "",
        }


@dataclass
class Preview:
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    problems: list[Problem] = field(default_factory=list)
    suggested_model: dict | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        return {
            "valid": self.valid,
            "subject": self.subject,
            "text": self.text,
            "problems": [p.as_json() for p in self.problems],
            "suggested_model": self.suggested_model,
        }


def normalise(source: str | None) -> str:
    """A textarea's value as the browser holds it: a form posts its lines ending in CRLF."""
    return (source or "").replace("\r\n", "\n")


def read_model(text: str | None):
    """(the test model, a Problem or None) from the editor's JSON; empty means none."""
    if not text or not text.strip():
        return None, None
    try:
        model = json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, too many digits, too deep
        return None, Problem("preview_model", f"The test model is not valid JSON: {error}")
    if not isinstance(model, dict):
        return None, Problem("preview_model", "The test model must be a JSON object.")
    return model, None


def at_line(field_name: str, source: str, problem) -> Problem:
    """``problem`` (a mustachio ParseProblem) with the line of ``source`` it is on."""
    found = Problem(field_name, problem.message, problem.line, problem.character)
    if problem.line is None:
        return found
    lines = source.split("\n")
    if not 0 < problem.line <= len(lines):
        return found
    line = lines[problem.line - 1].rstrip("\r")
    column = max((problem.character or 1) - 1, 0)
    start = max(0, column - EXCERPT // 2)
    found.excerpt = line[start : start + EXCERPT]
    found.caret = column - start
    return found


def syntax_problems(field_name: str, source: str, is_layout: bool) -> list[Problem]:
    """Every syntax problem of one part, at its line (the rule is ``services.parse_problems``)."""
    return [at_line(field_name, source, p) for p in services.parse_problems(source, is_layout)]


def render_draft(
    server, is_layout: bool, parts: dict, layout_alias: str, model_text: str, inline: bool = True
) -> Preview:
    """``parts`` (form field -> source) checked and rendered with the test model (the model
    the template's paths suggest, overlaid with ``model_text``'s JSON), as the Templates API
    validates them."""
    sources = {name: normalise(parts.get(name)) for name, _, _ in PARTS}
    if is_layout:
        sources["subject"] = ""
    model, model_problem = read_model(model_text)
    preview = Preview()
    if model_problem is not None:
        preview.problems.append(model_problem)
    given = {api: (sources[name] or None) for name, api, _ in PARTS}
    if all(value is None for value in given.values()):
        return preview
    try:
        results, suggested = services.validate(
            server, given, model, is_layout, (layout_alias or "").strip() or None, inline
        )
    except TemplateProblem as problem:
        preview.problems.append(Problem("layout_template", problem.message))
        return preview
    preview.suggested_model = suggested
    for name, api, attribute in PARTS:
        result = results.get(api)
        if result is None:
            continue
        if result.valid:
            setattr(preview, attribute, result.rendered)
        else:
            preview.problems += [at_line(name, sources[name], p) for p in result.problems]
    return preview
