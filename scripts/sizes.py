"""How the package is shaped, at the working tree or at a git revision: its largest modules and
functions, what sits at the package root, and its import graph.

    python scripts/sizes.py                 # the working tree
    python scripts/sizes.py --rev 3ee9777   # as it was at that commit
    python scripts/sizes.py --top 15 --commits 10

Lines are counted as the file holds them (docstrings and comments included), a function from
its `def` to its last line. Import edges are the package's own modules each module imports at
its top level (a package's ``__init__`` counts as a module); the longest chain is the longest
path in that graph, the number of tiers a change at the bottom can travel through. With
``--commits N``, the mean number of files the last N commits that changed the package touched.
"""

from __future__ import annotations

import argparse
import ast
import functools
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "src/productgan"
LIMIT = 400  # lines: the most a module should hold (docs/architecture.md)


def sources(rev: str | None) -> dict[str, str]:
    """Path -> text of every Python file of the package."""
    if rev is None:
        return {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / PACKAGE).rglob("*.py"))}
    names = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, PACKAGE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {
        name: subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True, text=True).stdout
        for name in names
        if name.endswith(".py")
    }


def functions(path: str, text: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append((node.end_lineno - node.lineno + 1, f"{path}:{node.lineno} {node.name}"))
    return found


def module_name(path: str) -> str:
    parts = Path(path).relative_to("src").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(files: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the package modules its top-level imports load (as tests/test_imports.py reads them)."""
    modules = {module_name(path) for path in files}
    graph: dict[str, set[str]] = {}
    for path, text in files.items():
        name = module_name(path)
        targets: set[str] = set()
        for node in ast.parse(text).body:
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    @functools.cache
    def chain(node: str) -> tuple[str, ...]:
        below = [chain(n) for n in graph.get(node, ()) if n != node]
        return (node, *max(below, key=len, default=()))

    return list(max((chain(n) for n in graph), key=len, default=()))


def wing_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between wings: a folder of the package, or a module at its root."""

    def wing(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    wings: dict[str, set[str]] = {}
    for module, targets in graph.items():
        wings.setdefault(wing(module), set()).update(wing(t) for t in targets if wing(t) != wing(module))
    return wings


def files_per_commit(count: int) -> tuple[float, int]:
    """The mean number of files touched by the last ``count`` commits that changed the package."""
    hashes = subprocess.run(
        ["git", "log", "--no-merges", f"-{count}", "--format=%H", "--", PACKAGE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    touched = [
        len(
            subprocess.run(
                ["git", "show", "--name-only", "--format=", h], cwd=ROOT, capture_output=True, text=True
            ).stdout.split()
        )
        for h in hashes
    ]
    return (sum(touched) / len(touched) if touched else 0.0), len(touched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="A git revision (default: the working tree).")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--commits", type=int, default=0, help="Also the mean files per commit of the last N.")
    args = parser.parse_args()
    files = sources(args.rev)
    modules = sorted(((text.count("\n"), path) for path, text in files.items()), reverse=True)
    funcs = sorted((f for path, text in files.items() for f in functions(path, text)), reverse=True)
    root = sorted(p for p in files if Path(p).parent == Path(PACKAGE) and not p.endswith("__init__.py"))
    graph = import_graph(files)
    chain = longest_chain(graph)
    print(f"{len(files)} modules, {sum(n for n, _ in modules):,} lines ({args.rev or 'working tree'})")
    print(f"{len(root)} modules at the package root: {', '.join(Path(p).name for p in root)}")
    print(f"{sum(n > LIMIT for n, _ in modules)} modules over {LIMIT} lines")
    print(f"{sum(map(len, graph.values()))} import edges; longest chain {len(chain)} modules: {' -> '.join(chain)}")
    wings = wing_graph(graph)
    try:
        tiers = longest_chain(wings)
        edges = sum(map(len, wings.values()))
        print(
            f"{len(wings)} wings, {edges} edges between them; longest chain of wings {len(tiers)}:", " -> ".join(tiers)
        )
    except RecursionError:
        print(f"{len(wings)} wings; their import graph has a cycle")
    if args.commits:
        mean, counted = files_per_commit(args.commits)
        print(f"{mean:.1f} files touched on average by the last {counted} commits that changed the package")
    print("\nlargest modules:")
    for lines, path in modules[: args.top]:
        print(f"  {lines:5d}  {path}")
    print("\nlargest functions:")
    for lines, name in funcs[: args.top]:
        print(f"  {lines:5d}  {name}")


if __name__ == "__main__":
    main()
