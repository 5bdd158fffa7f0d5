"""The package's import graph reads top-down: no module imports itself back, not even inside a function."""

import ast
from pathlib import Path

import keras_vit

PACKAGE = Path(keras_vit.__file__).parent


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, modules):
    """keras_vit modules imported anywhere in `path` (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from keras_vit import checkpoints` imports the submodule; `from keras_vit.x import f`, module x.
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [m for m in submodules if m in modules] or [node.module]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def _graph():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, paths) - {name} for name, path in paths.items()}


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for child in sorted(graph[node]):
            if child.startswith(node + "."):
                continue  # a package importing its own submodules is not a cycle
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child]
            if child not in state:
                found = visit(child, stack + [child])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_no_import_cycles():
    graph = _graph()
    assert "keras_vit.models.base" in graph and "keras_vit.hub" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]


def test_layers_and_leaves_import_no_models():
    graph = _graph()
    for name, imported in graph.items():
        if name.startswith("keras_vit.layers") or name in ("keras_vit.hub", "keras_vit.atomic", "keras_vit.config"):
            assert not {m for m in imported if m.startswith("keras_vit.models")}, name
    assert not graph["keras_vit.hub"]  # the leaf imports nothing from keras_vit
    assert not graph["keras_vit.data_format"]  # so models, layers and processors can all import it
