"""The package's import graph (an AST walk of tf_melgan/): no cycle, counting the imports
deferred into functions too, so every module's dependencies point one way."""

import ast
import os

import tf_melgan

PACKAGE = os.path.dirname(tf_melgan.__file__)


def _modules() -> dict:
    """{dotted name: path} of every module of the package."""
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                name = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return found


def import_graph(top_level_only=False) -> dict:
    """{module: modules of the package it imports}. A module's own parent packages are left
    out: Python imports them first whatever the module says."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        nodes = tree.body if top_level_only else ast.walk(tree)
        targets = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                submodules = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                targets.update(submodules or {node.module})
        graph[name] = {t for t in targets if t in modules and t != name
                       and not name.startswith(t + ".")}
    return graph


def cycles(graph) -> list:
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert "tf_melgan.checkpoint" in graph["tf_melgan.qat"]
    assert "tf_melgan.fake_quant" in graph["tf_melgan.convs"]
    assert "tf_melgan.qat" not in graph["tf_melgan.convs"]
    # a cycle it would have to find
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def deferred_imports() -> list:
    """(path, line, has_reason) of every import of a package module inside a function or
    class: has_reason when a comment is on its line or on the line above."""
    found = []
    for path in _modules().values():
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        tree = ast.parse("\n".join(lines))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or id(node) in top:
                continue
            if node.module and node.module.split(".")[0] == "tf_melgan":
                here, above = lines[node.lineno - 1], lines[node.lineno - 2].strip()
                found.append((path, node.lineno, "#" in here or above.startswith("#")))
    return found


def test_deferred_imports_are_few_and_say_why():
    """Package imports sit at the top of a module, except where deferring one keeps --help
    or a LiteRT-only environment free of TensorFlow, or an optional extra optional; those
    say so in a comment."""
    deferred = deferred_imports()
    assert any(path.endswith("train.py") for path, _, _ in deferred)  # the walk sees them
    assert len(deferred) <= 25, len(deferred)
    assert [(os.path.relpath(p, PACKAGE), n) for p, n, why in deferred if not why] == []
