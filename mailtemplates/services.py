"""The rules of a server's templates (compat §9.2–§9.10), for the API and the admin alike:
finding one by id or alias, creating and editing (names, aliases, the parts' syntax, the layout
placeholder, the per-server limit), deleting (never a layout still in use), validating content
without storing it, and pushing templates from one server to another.

Each refusal is a ``TemplateProblem`` carrying Postmark's ErrorCode (all HTTP 422)."""

import re
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from mailtemplates.inference import deep_merge, suggested_model
from mailtemplates.models import Template
from mailtemplates.mustachio import (
    ParseProblem,
    TemplateError,
    TemplateSyntaxError,
    check_model,
    parse,
)
from mailtemplates.rendering import inline_css, placeholders, render_part

NOT_FOUND = 1101
LIMIT_EXCEEDED = 1105
REQUIRED = 1120
TOO_LARGE = 1121
INVALID = 1122
NOT_ALLOWED = 1123
NOTHING_TO_PUSH = 1124
TYPES_DIFFER = 1125
LAYOUT_IN_USE = 1130
PLACEHOLDER_RULE = 1131
SERVER_NOT_FOUND = 601

ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")
MAX_NAME = 255
MAX_ALIAS = 255
MAX_SUBJECT = 2000
MAX_PUSH = 100
PARTS = (("Subject", "subject"), ("HtmlBody", "html_body"), ("TextBody", "text_body"))
ID_NOT_FOUND = "The 'TemplateId' associated with this request is not valid or was not found."
ALIAS_NOT_FOUND = (
    "The Template's 'Alias' associated with this request is not valid or was not found."
)
PLACEHOLDER_MESSAGE = (
    "The layout content placeholder must be present exactly once in each body of a layout: "
    "{{{ @content }}}."
)


class TemplateProblem(Exception):
    def __init__(self, error_code: int, message: str):
        super().__init__(message)
        self.error_code = error_code
        self.message = message


# --- Finding ----------------------------------------------------------------------------------


def find(server, id_or_alias, active_only: bool = True) -> Template | None:
    """The server's template named by its id (an int or digits) or alias (any letter case)."""
    found = Template.objects.filter(server=server)
    if active_only:
        found = found.filter(active=True)
    if isinstance(id_or_alias, int) and not isinstance(id_or_alias, bool):
        return found.filter(pk=id_or_alias).first() if 0 < id_or_alias < 2**63 else None
    text = str(id_or_alias).strip()
    if text.isdigit() and text.isascii():
        return found.filter(pk=int(text)).first() if 0 < int(text) < 2**63 else None
    if not ALIAS.match(text):
        return None
    # The newest first: an alias freed by a deletion may be taken again.
    return found.filter(alias__iexact=text).order_by("-active", "-pk").first()


def get(server, id_or_alias) -> Template:
    """``find`` (deleted templates included, as Postmark answers for them) or 1101."""
    template = find(server, id_or_alias, active_only=False)
    if template is None:
        raise TemplateProblem(NOT_FOUND, ID_NOT_FOUND)
    return template


def layout_of(template: Template) -> Template | None:
    if not template.layout_template:
        return None
    found = find(template.server, template.layout_template)
    return found if found is not None and found.is_layout else None


def for_sending(server, template_id, alias) -> Template:
    """The active Standard template a send names (TemplateId wins over TemplateAlias), or 1101."""
    if template_id is not None:
        template = find(server, template_id) if server is not None else None
        message = ID_NOT_FOUND
    elif alias is not None:
        template = find(server, str(alias)) if server is not None else None
        message = ALIAS_NOT_FOUND
    else:
        raise TemplateProblem(
            NOT_FOUND, "Either 'TemplateId' or 'TemplateAlias' is required to send with a template."
        )
    if template is None:
        raise TemplateProblem(NOT_FOUND, message)
    if template.is_layout:
        raise TemplateProblem(
            INVALID, "A Layout template cannot be sent; send a Standard template that uses it."
        )
    return template


# --- Creating and editing ---------------------------------------------------------------------


def parse_problems(source: str | None, is_layout: bool) -> list[ParseProblem]:
    """Every syntax problem of one part (a layout's body parsed as a layout), each at its line
    and character; [] when it parses."""
    if not source:
        return []
    try:
        parse("", layout=source) if is_layout else parse(source)
    except TemplateSyntaxError as error:
        return error.problems
    return []


def syntax_problem(name: str, source: str | None, is_layout: bool) -> TemplateProblem | None:
    problems = parse_problems(source, is_layout)
    if not problems:
        return None
    first = problems[0]
    return TemplateProblem(
        INVALID,
        f"The '{name}' content is not valid: {first.message} (line {first.line}, "
        f"character {first.character}).",
    )


def _text(data: dict, name: str, limit: int | None = None) -> str | None:
    value = data.get(name.lower())
    if value is None:
        return None
    if not isinstance(value, str):
        raise TemplateProblem(INVALID, f"The '{name}' field must be a string.")
    if "\x00" in value:
        raise TemplateProblem(INVALID, f"The '{name}' field must not contain NUL characters.")
    if limit is not None and len(value) > limit:
        raise TemplateProblem(TOO_LARGE, f"The '{name}' field may be at most {limit} characters.")
    return value


def _alias(server, value: str, exclude_pk=None) -> str:
    value = value.strip()
    if not ALIAS.match(value):
        raise TemplateProblem(
            INVALID,
            f"The alias '{value}' is not valid: it must start with a letter and hold only "
            "letters, digits, '.', '-' and '_'.",
        )
    taken = Template.objects.filter(server=server, active=True, alias__iexact=value)
    if taken.exclude(pk=exclude_pk).exists():
        raise TemplateProblem(INVALID, f"The alias '{value}' is already used by a template.")
    return value


def _check_layout_name(server, alias: str) -> str:
    layout = find(server, alias)
    if layout is None or not layout.is_layout:
        raise TemplateProblem(
            NOT_FOUND, f"The layout template '{alias}' associated with this request was not found."
        )
    return layout.alias


def _apply(template: Template, data: dict, creating: bool) -> None:
    """Check ``data`` (lower-cased keys, null = not given) and set it on ``template``."""
    name = _text(data, "Name", MAX_NAME)
    if name is not None:
        if not name.strip():
            raise TemplateProblem(REQUIRED, "The 'Name' field is required.")
        template.name = name.strip()
    elif creating:
        raise TemplateProblem(REQUIRED, "The 'Name' field is required.")
    alias = _text(data, "Alias", MAX_ALIAS)
    if alias is not None and alias.strip():
        template.alias = _alias(template.server, alias, template.pk)
    for field, attribute in PARTS:
        value = _text(data, field, MAX_SUBJECT if field == "Subject" else None)
        if value is not None:
            setattr(template, attribute, value)
    layout = _text(data, "LayoutTemplate", MAX_ALIAS)
    if template.is_layout:
        if template.subject:
            raise TemplateProblem(NOT_ALLOWED, "A Layout template cannot have a 'Subject'.")
        if layout:
            raise TemplateProblem(NOT_ALLOWED, "A Layout template cannot have a 'LayoutTemplate'.")
    elif layout is not None:
        template.layout_template = _check_layout_name(template.server, layout) if layout else ""
    if not (template.html_body or template.text_body):
        raise TemplateProblem(REQUIRED, "The 'HtmlBody' or 'TextBody' field is required.")
    if not template.is_layout and not template.subject:
        raise TemplateProblem(REQUIRED, "The 'Subject' field is required.")
    for field, attribute in PARTS:
        problem = syntax_problem(field, getattr(template, attribute), template.is_layout)
        if problem:
            raise problem
    if template.is_layout:
        for body in (template.html_body, template.text_body):
            if body and placeholders(body) != 1:
                raise TemplateProblem(PLACEHOLDER_RULE, PLACEHOLDER_MESSAGE)


def _check_limit(server, adding: int = 1) -> None:
    limit = settings.TEMPLATES_PER_SERVER
    if Template.objects.filter(server=server, active=True).count() + adding > limit:
        raise TemplateProblem(
            LIMIT_EXCEEDED, f"A server may hold at most {limit} templates; this one is full."
        )


def _new(server, data: dict) -> Template:
    kind = data.get("templatetype")
    if kind is None:
        kind = Template.Type.STANDARD
    if kind not in Template.Type.values:
        raise TemplateProblem(INVALID, "The 'TemplateType' field must be 'Standard' or 'Layout'.")
    template = Template(server=server, template_type=kind)
    _apply(template, data, creating=True)
    return template


def check(server, data: dict, template: Template | None = None) -> None:
    """What ``create`` (``template`` None) or ``edit`` would refuse, refused without saving
    anything: for a form that shows the refusal before it saves."""
    if template is None:
        _new(server, data)
        _check_limit(server)
        return
    if not template.active:
        raise TemplateProblem(NOT_FOUND, ID_NOT_FOUND)
    draft = Template.objects.get(pk=template.pk)  # _apply sets what it checks: on a copy
    _apply(draft, data, creating=False)


def create(server, data: dict) -> Template:
    template = _new(server, data)
    with transaction.atomic():
        _check_limit(server)
        template.save()
        if template.is_layout and not template.alias:
            # A Layout is always referable by alias (compat §9.3).
            template.alias = f"layout-{template.pk}"
            template.save(update_fields=["alias"])
    return template


def edit(template: Template, data: dict) -> Template:
    if not template.active:
        raise TemplateProblem(NOT_FOUND, ID_NOT_FOUND)
    old_alias = template.alias
    _apply(template, data, creating=False)
    with transaction.atomic():
        template.save()
        if template.is_layout and old_alias.lower() != template.alias.lower():
            Template.objects.filter(
                server=template.server, layout_template__iexact=old_alias
            ).update(layout_template=template.alias)
    return template


def users_of(layout: Template):
    return Template.objects.filter(
        server=layout.server, active=True, layout_template__iexact=layout.alias
    )


def delete(template: Template) -> None:
    if not template.active:
        raise TemplateProblem(NOT_FOUND, ID_NOT_FOUND)
    if template.is_layout and users_of(template).exists():
        raise TemplateProblem(
            LAYOUT_IN_USE,
            f"The layout '{template.alias}' is used by {users_of(template).count()} templates "
            "and cannot be deleted.",
        )
    template.active = False
    template.save(update_fields=["active", "updated_at"])


# --- Validating -------------------------------------------------------------------------------


@dataclass
class PartResult:
    valid: bool
    problems: list[ParseProblem]
    rendered: str | None


def validate(server, parts: dict, model, is_layout: bool, layout_alias, inline: bool):
    """(each part's PartResult or None, the suggested model): every supplied part parsed, the
    model inferred from all of them and overlaid with ``model``, each valid part rendered."""
    layout = None
    if layout_alias and not is_layout:
        layout = find(server, layout_alias)
        if layout is None or not layout.is_layout:
            raise TemplateProblem(
                NOT_FOUND,
                f"The layout template '{layout_alias}' associated with this request was not found.",
            )
    trees, results = [], {}
    for field, source in parts.items():
        if source is None:
            results[field] = None
            continue
        try:
            tree = parse("", layout=source) if is_layout else parse(source)
        except TemplateSyntaxError as error:
            results[field] = PartResult(False, error.problems, None)
            continue
        if is_layout and field != "Subject" and source and placeholders(source) != 1:
            results[field] = PartResult(
                False, [ParseProblem(PLACEHOLDER_MESSAGE, None, None)], None
            )
            continue
        trees.append(tree)
        results[field] = PartResult(True, [], None)
    suggested = suggested_model(trees)
    if isinstance(model, dict):
        suggested = deep_merge(suggested, model)
    for field, result in results.items():
        if result is None or not result.valid:
            continue
        source = parts[field]
        wrap = None
        if layout is not None and field != "Subject":
            wrap = layout.html_body if field == "HtmlBody" else layout.text_body
        try:
            check_model(suggested)
            if is_layout:
                rendered = render_part("", suggested, field == "HtmlBody", source)
            else:
                rendered = render_part(source, suggested, field == "HtmlBody", wrap)
        except TemplateError as error:
            result.valid = False
            result.problems = [ParseProblem(str(error), None, None)]
            continue
        if field == "HtmlBody" and inline and rendered:
            rendered = inline_css(rendered)
        result.rendered = rendered
    return results, suggested


# --- Pushing ----------------------------------------------------------------------------------


@dataclass
class Pushed:
    action: str  # "Create" or "Edit"
    template_id: int | None  # the destination's template, when it exists
    alias: str
    name: str
    template_type: str


def _same(a: Template, b: Template) -> bool:
    fields = ("name", "subject", "html_body", "text_body", "layout_template")
    return all((getattr(a, f) or "") == (getattr(b, f) or "") for f in fields)


def push(source_server, destination_server, perform: bool) -> list[Pushed]:
    """Copy the source's templates with an alias (layouts too) to the destination, matched by
    alias: what changes (or would, when ``perform`` is false)."""
    templates = list(
        Template.objects.filter(server=source_server, active=True)
        .exclude(alias="")
        # Layouts first, so that the templates using them find them.
        .order_by("template_type", "pk")
    )
    if not templates:
        raise TemplateProblem(NOTHING_TO_PUSH, "The source server has no templates with an alias.")
    if len(templates) > MAX_PUSH:
        raise TemplateProblem(
            NOTHING_TO_PUSH,
            f"At most {MAX_PUSH} templates may be pushed at once; the source server has "
            f"{len(templates)}.",
        )
    changes: list[tuple[Pushed, Template, Template | None]] = []
    for template in templates:
        existing = find(destination_server, template.alias)
        if existing is not None and existing.template_type != template.template_type:
            raise TemplateProblem(
                TYPES_DIFFER,
                f"The template '{template.alias}' is a {template.template_type} template on the "
                f"source server but a {existing.template_type} template on the destination.",
            )
        if existing is not None and _same(template, existing):
            continue
        pushed = Pushed(
            "Edit" if existing else "Create",
            existing.pk if existing else None,
            template.alias,
            template.name,
            template.template_type,
        )
        changes.append((pushed, template, existing))
    if perform and changes:
        with transaction.atomic():
            _check_limit(destination_server, sum(1 for _, _, e in changes if e is None))
            for _, template, existing in changes:
                target = existing or Template(
                    server=destination_server,
                    template_type=template.template_type,
                    alias=template.alias,
                )
                for f in ("name", "subject", "html_body", "text_body", "layout_template"):
                    setattr(target, f, getattr(template, f))
                target.save()
    return [pushed for pushed, _, _ in changes]
