"""The package's import graph: no cycle, and every import of the package's own modules at the top
of a module (an import inside a function is how a cycle hides)."""

from __future__ import annotations

import ast
from pathlib import Path

import productgan

PACKAGE = Path(productgan.__file__).parent
# Optional extras are imported where they are used, behind one helper each, so that the package
# works without them.
OPTIONAL = {
    "matplotlib",
    "tensorboard",
    "torch.utils.tensorboard",
    "fastapi",
    "uvicorn",
    "onnx",
    "onnxruntime",
    "onnxscript",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(node: ast.Import | ast.ImportFrom, importer: str) -> list[str]:
    """The package modules an import statement in ``importer`` loads: the module named, and the
    __init__ of each package on the way to it, except the packages that hold ``importer`` (they
    are already being imported when it runs)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level == 0 and node.module:
        names = [
            f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
            for alias in node.names
        ]
    else:
        return []
    own = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)}
    loaded = set()
    for name in names:
        parts = name.split(".")
        prefixes = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
        loaded.update(p for p in prefixes if p in MODULES and p not in own)
    return sorted(loaded)


def top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (not those under ``if TYPE_CHECKING``)."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.Try):
            found += [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        graph[name] = {m for node in top_level_imports(tree) for m in imported_modules(node, name)} - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path of module names, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_hides_inside_a_function():
    lazy = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    modules = [node.module or ""]
                else:
                    continue
                lazy += [
                    f"{name}:{node.lineno} {m}"
                    for m in modules
                    if m.split(".")[0] not in OPTIONAL and m not in OPTIONAL
                ]
    assert not lazy, "imports inside functions: " + ", ".join(lazy)
