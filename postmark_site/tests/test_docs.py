"""The documentation holds together: every relative link in README.md and docs/ reaches a file
that exists (and, with a ``#fragment``, a heading of that file), every page of docs/ is linked
from somewhere, and the README stays a short front door."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_MAX_LINES = 320

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def prose_lines(text: str, keep_code: bool = False):
    """(line number, line) outside fenced code blocks, with inline code removed unless kept."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if marker:
            if fence is None:
                fence = marker.group(1)[0]
            elif stripped.startswith(fence * 3):
                fence = None
            continue
        if fence is None:
            yield number, line if keep_code else INLINE_CODE.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for _, line in prose_lines(path.read_text(), keep_code=True):
        match = re.match(r"#{1,6} +(.*?) *#* *$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def local_links(path: Path):
    for number, line in prose_lines(path.read_text()):
        for match in LINK.finditer(line):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, https:, mailto:
            yield number, target


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, target in local_links(path):
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not resolved.exists():
            problems.append(f"{where} (no such file)")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{where} (no heading #{fragment})")
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_local_link_resolves(path):
    assert broken_links(path) == []


def test_every_docs_page_is_linked_from_somewhere():
    linked = set()
    for path in markdown_files():
        for _, target in local_links(path):
            file_part = target.partition("#")[0]
            if file_part:
                linked.add((path.parent / file_part).resolve())
    orphans = [
        str(page.relative_to(ROOT))
        for page in sorted((ROOT / "docs").rglob("*.md"))
        if page.resolve() not in linked
    ]
    assert orphans == []


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail into docs/"


def test_the_checker_finds_broken_links(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading (v2)\n")
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#a-code-heading-v2) [self](#page) [web](https://example.com/x)\n"
        "[missing](nowhere.md) [bad anchor](other.md#nope) ![img](img.png)\n"
        "`[in code](ignored.md)`\n"
        "```\n[in a fence](ignored.md)\n```\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "page.md:4: nowhere.md (no such file)",
        "page.md:4: other.md#nope (no heading #nope)",
        "page.md:4: img.png (no such file)",
    ]


def test_slugs_follow_github():
    assert slug("Messages API (`python -m bench.messages_api`)") == (
        "messages-api-python--m-benchmessages_api"
    )
    assert slug("Deployment files (`deploy/`)") == "deployment-files-deploy"
    assert slug("The From rule and its errors") == "the-from-rule-and-its-errors"


def settings_read_by_the_code() -> set[str]:
    """Every environment variable postmark_site's settings and gunicorn configuration read."""
    names = set()
    for name in ("settings.py", "gunicorn.py"):
        source = (ROOT / "postmark_site" / name).read_text()
        names.update(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]+)\"", source))
        names.update(re.findall(r"os\.environ(?:\.get\(|\[)\s*\"([A-Z][A-Z0-9_]+)\"", source))
    return names


def test_every_setting_is_documented():
    names = settings_read_by_the_code()
    assert {"DATABASE_URL", "SECRETS_KEY", "SMTP_LISTEN", "WEB_BIND"} <= names
    page = (ROOT / "docs" / "operations" / "configuration.md").read_text()
    missing = sorted(name for name in names if not re.search(rf"\b{name}\b", page))
    assert missing == [], "add these to docs/operations/configuration.md"


def test_the_webhook_signature_snippet_is_the_tested_one():
    tests = ast.parse((ROOT / "webhooks" / "tests" / "test_webhooks.py").read_text())
    [snippet] = [
        node.value.value
        for node in tests.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SNIPPET"
    ]
    page = (ROOT / "docs" / "user-guide" / "webhooks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    assert snippet.strip() in [block.strip() for block in blocks]
