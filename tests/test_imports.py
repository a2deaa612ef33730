"""The package's layering, read from the source (ast, nothing executed): every import of
``sdnet_jax`` inside ``sdnet_jax`` (lazy ones inside functions included)."""

from __future__ import annotations

import ast
import itertools
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sdnet_jax")
# What each part may import from the package (besides itself and the top-level helper modules
# errors, checks, workarounds, viz): the layers ops -> models -> runs -> train, with data and
# runtime beside them and evaluation reading trained runs without training code.
ALLOWED = {
    "ops": set(),
    "models": {"ops"},
    "data": set(),
    "runtime": set(),
    "runs": {"ops", "models", "data", "runtime"},
    "evaluation": {"ops", "models", "data", "runtime", "runs"},
    "train": {"ops", "models", "data", "runtime", "runs", "evaluation"},
}
LEAVES = {
    "errors",
    "checks",
    "workarounds",
    "viz",
}  # import nothing from the package but each other


def _part(path: str) -> str:
    rel = os.path.relpath(path, PACKAGE).split(os.sep)
    return rel[0] if len(rel) > 1 else rel[0][:-3]


def _imports(path: str) -> set[str]:
    """The parts of the package that the module at ``path`` imports."""
    tree = ast.parse(open(path).read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "sdnet_jax" and len(parts) > 1:
                found.add(parts[1])
    return found


def _sources() -> list[str]:
    """The paths of the package's modules."""
    return sorted(os.path.join(root, name) for root, _, files in os.walk(PACKAGE)
                  for name in files if name.endswith(".py"))  # fmt: skip


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _sources():
        part = _part(path)
        graph.setdefault(part, set()).update(_imports(path) - {part})
    return graph


GRAPH = _graph()


def test_the_graph_is_read():
    assert {"ops", "models", "data", "runtime", "runs", "train", "evaluation"} <= set(GRAPH)
    assert "runs" in GRAPH["train"] and "checks" in GRAPH["ops"]


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_subpackage_imports_only_the_layers_below_it(part):
    assert GRAPH[part] - LEAVES <= ALLOWED[part], (part, sorted(GRAPH[part] - LEAVES))


def test_evaluation_never_imports_train():
    assert "train" not in GRAPH["evaluation"]


def test_no_two_parts_import_each_other():
    mutual = [(a, b) for a, b in itertools.combinations(sorted(GRAPH), 2)
              if b in GRAPH[a] and a in GRAPH[b]]  # fmt: skip
    assert mutual == []


def test_leaf_modules_import_no_subpackage():
    for leaf in LEAVES:
        assert GRAPH.get(leaf, set()) <= LEAVES, (leaf, GRAPH.get(leaf))


def test_ops_import_only_jax_and_numpy():
    for name in os.listdir(os.path.join(PACKAGE, "ops")):
        if name.endswith(".py"):
            tree = ast.parse(open(os.path.join(PACKAGE, "ops", name)).read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    mods = (
                        [a.name for a in node.names]
                        if isinstance(node, ast.Import)
                        else [node.module or ""]
                    )
                    for mod in mods:
                        top = mod.split(".")[0]
                        assert top in {"jax", "numpy", "sdnet_jax", "__future__", "collections",
                                       "functools", "typing", "math", "dataclasses"}, (name, mod)  # fmt: skip


MAX_LINES = 600  # issue 14: a module that grows past this owns more than one idea


def test_no_module_is_longer_than_the_limit():
    long = {}
    for path in _sources():
        lines = sum(1 for _ in open(path))
        if lines > MAX_LINES:
            long[os.path.relpath(path, PACKAGE)] = lines
    assert not long, f"split these modules (more than {MAX_LINES} lines): {long}"


def test_the_loop_knows_nothing_of_the_data_layer():
    assert not {"data"} & _imports(os.path.join(PACKAGE, "train", "loop.py"))


def _private_uses(path: str) -> list[str]:
    """Private names (``_x``) of other package modules that the module at ``path`` imports or
    reads as an attribute of an imported package module."""
    tree = ast.parse(open(path).read(), path)
    aliases, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sdnet_jax"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"from {node.module} import {alias.name}")
                aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            aliases |= {a.asname or a.name.split(".")[0] for a in node.names
                        if a.name.startswith("sdnet_jax")}  # fmt: skip
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):  # fmt: skip
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_uses_a_private_name_of_another():
    found = {}
    for path in _sources():
        if uses := _private_uses(path):
            found[os.path.relpath(path, PACKAGE)] = uses
    assert not found, found


def test_nothing_imports_jax_internals():
    """A newer JAX (the GPU hosts bring their own) may move anything under ``jax._src``."""
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(open(path).read(), path)):
            modules = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            found += [(path, m) for m in modules if m.startswith("jax._src")]
    assert found == []
