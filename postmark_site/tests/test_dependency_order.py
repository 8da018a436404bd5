"""The apps form one dependency order, and no module imports another in a circle.

Every product module's imports are read from its source (the AST, so imports inside functions
count too) and checked against ``ORDER``, lowest first: a module may import its own app and the
apps below it, never one above. The order is declared once, here; ``INSTALLED_APPS`` lists the
project's Django apps in the same order (checked below).

    core           no models: leases, log context, metrics, embedded broker, health, secrets,
                   DKIM signing, MIME header editing, the DNS resolver, domain and address forms
    servers        Server, API and account tokens, staff access
    streams        MessageStream, SmtpToken, IpCredential, suppressions
    bounces        Bounce and its types, report parsing
    domains        domains, sender signatures, DKIM keys, verification, sender identity
    mailtemplates  Postmark templates and layouts, the Mustachio renderer, CSS inlining
    messages       the accept record, processing, OutboundMessage/Recipient/MessageEvent, queries
    tracking       open and click rewriting, tokens, the public endpoints
    delivery       transport, connections, claims, outcomes, the delivery tasks
    webhooks       fan-out, signing, the SSRF guard, the HTTP client, the Server API's hooks
    inbound        the inbound MX's messages: parsing to Postmark's inbound JSON, inbound rules,
                   the inbound webhook
    privacy        data removals: erasing an address's every trace, in every server
    stats          the aggregation queries the admin's dashboard and System page draw from
                   (webhook posts among them), and the daily roll-ups the stats API reads
    api            the HTTP API: conventions and one views module per resource
    smtpgw         the SMTP protocol edge
    postmark_site  settings, the root URLconf, the Celery app, the admin site, its views and charts

Lower apps reach higher ones only through signals they define and higher apps connect to
(``streams.signals.subscription_changed``, ``messages.signals.messages_queued``,
``messages.events.event_committed``). Tests, benchmarks and end-to-end tests stand above
everything and are not checked.
"""

import ast
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.no_db

ROOT = Path(__file__).resolve().parents[2]

ORDER = [
    "core",
    "servers",
    "streams",
    "bounces",
    "domains",
    "mailtemplates",
    "messages",
    "tracking",
    "delivery",
    "webhooks",
    "inbound",
    "privacy",
    "stats",
    "api",
    "smtpgw",
    "postmark_site",
]
NOT_CHECKED = {"tests", "migrations", "bench", "e2e", "data", ".venv"}


def layer_of(module: str) -> str | None:
    app = module.split(".")[0]
    return app if app in ORDER else None


def product_modules() -> dict[str, Path]:
    modules = {}
    for app in ORDER:
        for path in (ROOT / app).rglob("*.py"):
            if NOT_CHECKED & set(path.relative_to(ROOT).parts):
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that ``module`` imports, anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # "from package import module" imports the module; "from module import name" the module.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    known = set(modules)
    return {module: imports_of(module, path, known) for module, path in modules.items()}


def test_every_app_has_a_place_in_the_order():
    """Every top-level package of product code is in ORDER, and INSTALLED_APPS follows it."""
    packages = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in NOT_CHECKED
    }
    assert packages <= set(ORDER), f"packages missing from ORDER: {packages - set(ORDER)}"
    installed = [app.split(".")[0] for app in settings.INSTALLED_APPS if app.split(".")[0] in ORDER]
    installed = list(dict.fromkeys(installed))  # postmark_site comes first: the admin's config
    installed.remove("postmark_site")
    assert installed == [layer for layer in ORDER if layer in installed]


def test_no_app_imports_an_app_above_it():
    rank = {layer: i for i, layer in enumerate(ORDER)}
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if rank[layer_of(target)] > rank[layer_of(module)]
    )
    assert upward == [], "imports against the dependency order:\n" + "\n".join(upward)


def test_no_module_imports_another_in_a_circle():
    graph = import_graph()
    cycles = [sorted(component) for component in strongly_connected(graph) if len(component) > 1]
    assert cycles == [], "modules that import each other: " + "; ".join(map(str, cycles))


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively (the graph is a few hundred modules)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def test_the_checker_sees_a_planted_cycle_and_an_upward_import(tmp_path):
    """The checks above are only worth their green if they can turn red."""
    graph = {"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": set()}
    assert [sorted(c) for c in strongly_connected(graph) if len(c) > 1] == [["a.x", "a.y"]]
    path = tmp_path / "processing.py"
    path.write_text("def later():\n    from webhooks.tasks import post\n")
    assert imports_of("messages.processing", path, {"webhooks.tasks"}) == {"webhooks.tasks"}
