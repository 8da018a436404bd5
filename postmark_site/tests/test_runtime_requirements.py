"""`make run` installs requirements.txt only; `make test` adds requirements-dev.txt. So no product
module (anything outside tests/, bench/, e2e/) may import a package that only the development
requirements bring, directly or through their dependencies, and every command the Procfile and
`make run` start must come from a runtime package."""

import ast
import os
import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
NOT_PRODUCT = {"tests", "bench", "e2e", "clients", "data", "node_modules", "test-artifacts"}


def requirement_lines(path: Path) -> list[Requirement]:
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            found.append(Requirement(line))
    return found


def closure(requirements: list[Requirement]) -> set[str]:
    """The distributions these requirements install, with everything they depend on."""
    seen, todo = set(), [(canonicalize_name(r.name), set(r.extras)) for r in requirements]
    while todo:
        name, extras = todo.pop()
        key = (name, frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append((canonicalize_name(requirement.name), set(requirement.extras)))
    return {name for name, _ in seen}


RUNTIME = closure(requirement_lines(ROOT / "requirements.txt"))
DEVELOPMENT = closure(requirement_lines(ROOT / "requirements-dev.txt"))


def dev_only_modules() -> set[str]:
    """Top-level import names provided only by distributions the development tools bring."""
    dev_only = DEVELOPMENT - RUNTIME
    return {
        module
        for module, distributions in metadata.packages_distributions().items()
        if all(canonicalize_name(d) in dev_only for d in distributions)
    }


def product_files(root: Path = ROOT):
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(
            d for d in subdirectories if not d.startswith(".") and d not in NOT_PRODUCT
        )
        for name in sorted(files):
            if name.endswith(".py") and name != "conftest.py":
                yield Path(directory) / name


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def dev_imports(root: Path, forbidden: set[str]) -> list[str]:
    return [
        f"{path.relative_to(root)} imports {name}"
        for path in product_files(root)
        for name in sorted(imported_top_levels(path) & forbidden)
    ]


def test_no_product_module_imports_a_development_package():
    forbidden = dev_only_modules()
    assert {"pytest", "hypothesis", "playwright", "postmarker", "dkim"} <= forbidden
    assert not {"django", "celery", "aiosmtpd", "honcho"} & forbidden
    assert dev_imports(ROOT, forbidden) == []


def test_the_scan_sees_imports_anywhere_in_a_module(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "views.py").write_text(
        "import os\n\ndef f():\n    from hypothesis import given\n    import pytest.mark\n"
    )
    (tmp_path / "app" / "tests").mkdir()
    (tmp_path / "app" / "tests" / "test_x.py").write_text("import pytest\n")
    assert dev_imports(tmp_path, {"pytest", "hypothesis"}) == [
        "app/views.py imports hypothesis",
        "app/views.py imports pytest",
    ]


def console_script_owners() -> dict[str, str]:
    return {
        entry.name: canonicalize_name(entry.dist.name)
        for entry in metadata.entry_points(group="console_scripts")
    }


def test_what_make_run_starts_comes_from_runtime_packages():
    commands = {"honcho"}  # make run starts the Procfile with honcho
    for line in (ROOT / "Procfile").read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            command = re.sub(r"^nice\s+(-n\s*)?-?\d+\s+", "", line.split(":", 1)[1].strip())
            commands.add(command.split()[0])
    commands.discard("python")
    owners = console_script_owners()
    assert {command: owners.get(command) in RUNTIME for command in commands} == {
        command: True for command in commands
    }
    assert commands >= {"honcho", "gunicorn", "celery"}
