"""What a push between servers would change, field by field: the plan ``services.push`` makes
in a dry run (``perform`` false: nothing is written), each change with a unified diff of every
field it changes on the destination, and a digest of the whole plan, so that a push confirmed
after looking at the diff can be refused when the templates changed in between."""

import difflib
import hashlib
from dataclasses import dataclass, field

from mailtemplates import services
from mailtemplates.models import Template
from mailtemplates.services import Pushed

# The fields a push copies (services.push), with the labels the diff shows.
FIELDS = (
    ("name", "Name"),
    ("layout_template", "LayoutTemplate"),
    ("subject", "Subject"),
    ("html_body", "HtmlBody"),
    ("text_body", "TextBody"),
)
MAX_DIFF_LINES = 2000  # per field: a longer diff is cut, and says so


@dataclass
class FieldDiff:
    label: str
    lines: list[str]
    cut: int = 0  # lines left out past MAX_DIFF_LINES

    def rows(self) -> list[tuple[str, str]]:
        """(css class, line) of each line: added, removed, hunk or context."""
        kinds = {"+": "pm-diff-add", "-": "pm-diff-del", "@": "pm-diff-hunk"}
        return [(kinds.get(line[:1], "pm-diff-ctx"), line) for line in self.lines]


@dataclass
class PlannedChange:
    pushed: Pushed
    source: Template
    existing: Template | None
    diffs: list[FieldDiff] = field(default_factory=list)


def _lines(value: str | None) -> list[str]:
    return (value or "").replace("\r\n", "\n").split("\n") if value else []


def field_diffs(source: Template, existing: Template | None) -> list[FieldDiff]:
    """A unified diff of each field ``source`` would change on ``existing`` (None: created)."""
    found = []
    for name, label in FIELDS:
        old, new = getattr(existing, name, None) or "", getattr(source, name) or ""
        if old == new:
            continue
        # The hunks only: the field's label stands for the two file lines.
        lines = list(difflib.unified_diff(_lines(old), _lines(new), lineterm=""))[2:]
        cut = max(0, len(lines) - MAX_DIFF_LINES)
        found.append(FieldDiff(label, lines[:MAX_DIFF_LINES], cut))
    return found


def plan(source_server, destination_server) -> list[PlannedChange]:
    """The dry run of ``services.push`` (raises its TemplateProblem), with each change's diff."""
    planned = []
    for pushed in services.push(source_server, destination_server, perform=False):
        source = services.find(source_server, pushed.alias)
        existing = (
            Template.objects.filter(pk=pushed.template_id).first() if pushed.template_id else None
        )
        planned.append(PlannedChange(pushed, source, existing, field_diffs(source, existing)))
    return planned


def digest(planned: list[PlannedChange]) -> str:
    """What the plan would write, hashed: equal digests, equal pushes."""
    hashed = hashlib.sha256()
    for change in planned:
        p = change.pushed
        hashed.update(repr((p.action, p.template_id, p.alias, p.template_type)).encode())
        for name, _ in FIELDS:
            for template in (change.source, change.existing):
                value = getattr(template, name, None) or ""
                hashed.update(hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest())
    return hashed.hexdigest()
