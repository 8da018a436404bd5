"""Mustachio, Postmark's template language (compat §10): a tokenizer, a parser into a small tree
and a renderer, written for the semantics Postmark documents rather than generic Mustache's.

- A name is looked up in the current scope only (no lookup up the chain); ``../`` moves to the
  scope that holds the current one; inside ``{{#each}}`` an item's parent is the list itself.
- ``{{#x}}`` renders once when ``x`` is truthy, with ``x`` as the scope (a list is not iterated);
  ``{{^x}}`` when it is falsy (also with ``x`` as the scope); only ``{{#each x}}`` loops.
- Falsy: missing, null, false, every numeric zero, "", [] and {}. Values print the .NET way
  (``True``, ``5``, ``1E+20``); objects and lists print nothing.
- ``{{x}}`` is HTML-encoded (as .NET's HtmlEncode) when rendering an HtmlBody only;
  ``{{{x}}}`` and ``{{& x}}`` never are. Comments ``{{! … }}`` are dropped; text outside tags
  is kept verbatim.

Nothing a template or a model holds can run code, read a file or loop without end: there are no
partials, lambdas or delimiter changes; sections nest at most ``TEMPLATE_MAX_NESTING`` deep
(a parse error beyond), and a render stops with ``RenderError`` past
``TEMPLATE_MAX_RENDERED_SIZE`` characters or ``TEMPLATE_MAX_RENDER_STEPS`` nodes visited.
``compile_template`` caches what it compiles, keyed by the source (one entry per template
version).
"""

import bisect
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from django.conf import settings

TAG = re.compile(r"\{\{\{([^{}]+)\}\}\}|\{\{([^{}]+)\}\}")
PATH = re.compile(r"^((?:\.\./)*)(\.|\w+(?:\.\w+)*)?$")
PLACEHOLDER = re.compile(r"^\s*@content\s*$")
NON_BMP = re.compile("[\U00010000-\U0010ffff]")
_HTML = {ord("<"): "&lt;", ord(">"): "&gt;", ord("&"): "&amp;", ord('"'): "&quot;"}
_HTML[ord("'")] = "&#39;"
_HTML.update({c: f"&#{c};" for c in range(0xA0, 0x100)})

EACH_NO_PATH = (
    "The 'each' block being opened requires a model path to be specified in the form "
    "'{{#each <name>}}'."
)
EACH_BAD_CLOSE = "The syntax to close the 'each' block should be: '{{/each}}'."
EACH_NOT_OPEN = (
    "An 'each' block is being closed, but no corresponding opening element "
    "('{{#each <name>}}') was detected."
)
MISMATCHED = "It appears that open and closing elements are mismatched."


class TemplateError(Exception):
    """A template that cannot be parsed or rendered; ``str()`` says why."""


@dataclass(frozen=True)
class ParseProblem:
    message: str
    line: int | None
    character: int | None


class TemplateSyntaxError(TemplateError):
    def __init__(self, problems: list[ParseProblem]):
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.character or 0))
        super().__init__("; ".join(p.message for p in self.problems))


class RenderError(TemplateError):
    pass


# --- Values ------------------------------------------------------------------------------------


def truthy(value) -> bool:
    """Mustachio's truthiness: JSON's falsy values, every zero, "" and empty lists and objects."""
    return bool(value)  # None, False, 0, 0.0, "", [], {} are exactly Python's falsy JSON values


def dotnet_float(value: float) -> str:
    """A double as .NET prints it: the shortest round-trip digits, in exponent form from 1E+15
    and from 1E-05 down."""
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    written = "".join(map(str, digit_tuple))
    digits = written.rstrip("0")
    exponent += len(written) - len(digits)
    point = len(digits) - 1 + exponent  # the exponent in scientific notation
    minus = "-" if value < 0 else ""
    if -5 < point < 15:
        if exponent >= 0:
            return minus + digits + "0" * exponent
        whole = len(digits) + exponent
        if whole > 0:
            return minus + digits[:whole] + "." + digits[whole:]
        return minus + "0." + "0" * -whole + digits
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{minus}{mantissa}E{'+' if point >= 0 else '-'}{abs(point):02d}"


def printed(value) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return dotnet_float(value)
    return str(value)


def html_encode(text: str) -> str:
    """.NET's HtmlEncode: the five markup characters, Latin-1 and non-BMP characters as
    numeric references."""
    text = text.translate(_HTML)
    if not text.isascii():
        text = NON_BMP.sub(lambda m: f"&#{ord(m.group())};", text)
    return text


# --- Parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    ups: int
    keys: tuple[str, ...]
    text: str


@dataclass
class Node:
    kind: str  # "text", "var", "raw", "section", "inverted", "each", "content"
    text: str = ""
    path: Path | None = None
    children: list | None = None
    offset: int = 0
    source: str = ""  # of an opening tag: the text it is in (a layout's or its content's)


class _Positions:
    def __init__(self, source: str):
        self.starts = [0] + [m.end() for m in re.finditer("\n", source)]

    def at(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, offset)
        return line, offset - self.starts[line - 1] + 1


def _path(text: str) -> Path | None:
    match = PATH.match(text)
    if match is None or not text:
        return None
    ups = len(match.group(1)) // 3
    rest = match.group(2) or ""
    keys = () if rest in ("", ".") else tuple(rest.split("."))
    return Path(ups, keys, text)


def tokenize(source: str, allow_content: bool):
    """(kind, text or path, offset) for each piece of ``source``."""
    pos = 0
    for match in TAG.finditer(source):
        if match.start() > pos:
            yield "text", source[pos : match.start()], pos
        pos = match.end()
        triple, double = match.group(1), match.group(2)
        if triple is not None:
            if PLACEHOLDER.match(triple) and allow_content:
                yield "content", "", match.start()
            else:
                yield "raw", triple.strip(), match.start()
            continue
        sigil, rest = double[0], double[1:].strip()
        if sigil == "!":
            continue
        if sigil == "#" and double[1:5] == "each" and (len(double) == 5 or double[5].isspace()):
            yield "each", double[5:].strip(), match.start()
        elif sigil == "#" and double[1:5] == "each":
            yield "error", EACH_NO_PATH, match.start()
        elif sigil == "/" and double[1:5] == "each":
            yield ("close_each" if rest == "each" else "error"), EACH_BAD_CLOSE, match.start()
        elif sigil in "#^/&":
            kind = {"#": "section", "^": "inverted", "/": "close", "&": "raw"}[sigil]
            yield kind, rest, match.start()
        else:
            yield "var", double.strip(), match.start()
    if pos < len(source):
        yield "text", source[pos:], pos


def parse(source: str, layout: str | None = None) -> list[Node]:
    """The tree of ``source``; with ``layout``, the layout's tree with ``source``'s tokens in
    place of its content placeholder. Raises TemplateSyntaxError listing every problem."""
    problems: list[tuple[str, str, int]] = []  # (message, source, offset)
    if layout is None:
        tokens = [(*t, source) for t in tokenize(source, allow_content=False)]
    else:
        tokens = []
        for token in tokenize(layout, allow_content=True):
            if token[0] == "content":
                tokens.extend((*t, source) for t in tokenize(source, allow_content=False))
            else:
                tokens.append((*token, layout))
    max_depth = settings.TEMPLATE_MAX_NESTING
    root: list[Node] = []
    stack: list[tuple[Node, list[Node]]] = []  # open blocks and the list they were added to
    current = root
    for kind, value, offset, src in tokens:
        if kind == "text":
            current.append(Node("text", value, offset=offset))
            continue
        if kind == "content":
            current.append(Node("content", offset=offset))
            continue
        if kind == "error":
            problems.append((value, src, offset))
            continue
        if kind == "close_each":
            if stack and stack[-1][0].kind == "each":
                current = stack.pop()[1]
            else:
                problems.append((EACH_NOT_OPEN, src, offset))
            continue
        path = _path(value)
        if kind == "close":
            if stack and stack[-1][0].kind != "each" and stack[-1][0].path.text == value:
                current = stack.pop()[1]
            else:
                problems.append((MISMATCHED, src, offset))
            continue
        if path is None:
            if kind == "each" and not value:
                problems.append((EACH_NO_PATH, src, offset))
            else:
                problems.append(
                    (
                        f"The path '{value}' is not valid. Please see documentation for "
                        "examples of valid paths.",
                        src,
                        offset,
                    )
                )
            continue
        if kind in ("var", "raw"):
            current.append(Node(kind, path=path, offset=offset))
            continue
        # An opening tag; {{^a}} (or {{#a}}) while block a is open closes it first (if/else).
        if stack and stack[-1][0].kind != "each" and stack[-1][0].path.text == value:
            current = stack.pop()[1]
        if len(stack) >= max_depth:
            problems.append((f"Blocks may be nested at most {max_depth} levels deep.", src, offset))
            continue
        node = Node(kind, path=path, children=[], offset=offset, source=src)
        current.append(node)
        stack.append((node, current))
        current = node.children
    for node, _ in stack:
        problems.append(
            (
                f"A scope block to the following path was opened but not closed: "
                f"'{node.path.text}', please close it using the appropriate syntax.",
                node.source,
                node.offset,
            )
        )
    if problems:
        positions = {}
        found = []
        for message, src, offset in problems:
            where = positions.setdefault(id(src), _Positions(src)).at(offset)
            found.append(ParseProblem(message, *where))
        raise TemplateSyntaxError(found)
    return root


# --- Rendering ---------------------------------------------------------------------------------


class Scope:
    __slots__ = ("value", "parent")

    def __init__(self, value, parent):
        self.value = value
        self.parent = parent


def _resolve(scope: Scope, path: Path) -> Scope:
    for _ in range(path.ups):
        scope = scope.parent or scope  # extra ../ at the root are ignored
    for key in path.keys:
        value = scope.value
        scope = Scope(value.get(key) if isinstance(value, dict) else None, scope)
    return scope


def _value(scope: Scope, path: Path):
    for _ in range(path.ups):
        scope = scope.parent or scope
    value = scope.value
    for key in path.keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


class _Run:
    def __init__(self, escape: bool, content: str):
        self.escape = escape
        self.content = content
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.max_size = settings.TEMPLATE_MAX_RENDERED_SIZE
        self.max_steps = settings.TEMPLATE_MAX_RENDER_STEPS

    def emit(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.max_size:
            raise RenderError(
                f"The rendered content is larger than the limit of {self.max_size} characters."
            )
        self.out.append(text)

    def nodes(self, nodes: list[Node], scope: Scope) -> None:
        self.steps += len(nodes)
        if self.steps > self.max_steps:
            raise RenderError(
                f"Rendering takes more than {self.max_steps} steps, the most a template may take."
            )
        for node in nodes:
            kind = node.kind
            if kind == "text":
                self.emit(node.text)
            elif kind == "var":
                text = printed(_value(scope, node.path))
                self.emit(html_encode(text) if self.escape else text)
            elif kind == "raw":
                self.emit(printed(_value(scope, node.path)))
            elif kind == "section":
                inner = _resolve(scope, node.path)
                if truthy(inner.value):
                    self.nodes(node.children, inner)
            elif kind == "inverted":
                inner = _resolve(scope, node.path)
                if not truthy(inner.value):
                    self.nodes(node.children, inner)
            elif kind == "each":
                self.each(node, scope)
            else:  # the layout's content placeholder when a layout renders alone
                self.emit(self.content)

    def each(self, node: Node, scope: Scope) -> None:
        inner = _resolve(scope, node.path)
        items = inner.value
        if not truthy(items):
            return
        if not isinstance(items, list):
            raise RenderError(
                f"'{node.path.text}' is used like an array by the template, but is a scalar "
                "value or object in your model."
            )
        for item in items:
            self.nodes(node.children, Scope(item, inner))


class Compiled:
    """A parsed template, rendered as many times as needed."""

    def __init__(self, nodes: list[Node]):
        self.nodes = nodes

    def render(self, model, escape: bool, content: str = "") -> str:
        run = _Run(escape, content)
        run.nodes(self.nodes, Scope(model, None))
        return "".join(run.out)


@lru_cache(maxsize=1024)
def compile_template(source: str, layout: str | None = None) -> Compiled:
    """``source`` compiled (within ``layout`` when given); raises TemplateSyntaxError."""
    return Compiled(parse(source, layout))


def model_size(model) -> int:
    """The JSON values ``model`` holds (each object, list, member and item), counted without
    recursion, and no further than one past the limit."""
    limit = settings.TEMPLATE_MAX_MODEL_VALUES
    count, stack = 0, [model]
    while stack and count <= limit:
        value = stack.pop()
        count += 1
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count


def check_model(model) -> None:
    limit = settings.TEMPLATE_MAX_MODEL_VALUES
    if model_size(model) > limit:
        raise RenderError(f"The TemplateModel holds more than {limit} values, the most it may.")
