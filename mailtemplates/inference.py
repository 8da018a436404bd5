"""The ``SuggestedTemplateModel`` of ``POST /templates/validate`` (compat §10.8): the model a
template's paths imply, each scalar use as ``"<key>_Value"``, a section with children as an
object, an ``{{#each}}`` as a one-item list of its object (or ``["<key>_1", "<key>_2",
"<key>_3"]`` when it uses no keys), deep-merged with the caller's ``TestRenderModel``.

As in Mustachio's own inference, one ``../`` inside ``{{#each}}`` reaches the list's owner
(rendering needs two)."""

from mailtemplates.mustachio import Node


class _Inferred:
    __slots__ = ("parent", "children", "kind", "item")

    def __init__(self, parent):
        self.parent = parent
        self.children: dict[str, _Inferred] = {}
        self.kind = "value"  # or "object", "each"
        self.item: _Inferred | None = None

    def walk(self, path) -> "_Inferred":
        node = self
        for _ in range(path.ups):
            node = node.parent or node
        for key in path.keys:
            if node.kind == "value":
                node.kind = "object"
            node = node.children.setdefault(key, _Inferred(node))
        return node

    def json(self, key: str):
        if self.kind == "each":
            if self.item is not None and self.item.children:
                return [self.item.json(key)]
            return [f"{key}_1", f"{key}_2", f"{key}_3"]
        if self.kind == "object" or self.children:
            return {k: child.json(k) for k, child in self.children.items()}
        return f"{key}_Value"


def _visit(nodes: list[Node], scope: _Inferred) -> None:
    for node in nodes:
        if node.kind in ("var", "raw"):
            if node.path.keys:
                scope.walk(node.path)
        elif node.kind in ("section", "inverted"):
            target = scope.walk(node.path)
            if node.path.keys and target.kind == "value":
                target.kind = "object"
            _visit(node.children, target)
        elif node.kind == "each":
            target = scope.walk(node.path)
            target.kind = "each"
            if target.item is None:
                target.item = _Inferred(target.parent)
            _visit(node.children, target.item)


def suggested_model(trees: list[list[Node]]) -> dict:
    root = _Inferred(None)
    root.kind = "object"
    for nodes in trees:
        _visit(nodes, root)
    return root.json("")


def deep_merge(suggested, given):
    """``given`` over ``suggested``: its keys win, objects merge, extra keys are kept."""
    if not (isinstance(suggested, dict) and isinstance(given, dict)):
        return given
    merged = dict(suggested)
    for key, value in given.items():
        merged[key] = deep_merge(suggested[key], value) if key in suggested else value
    return merged
