"""The largest modules and functions of the package, at the working tree or at a git revision.

    python scripts/sizes.py                 # the working tree
    python scripts/sizes.py --rev 3ee9777   # as it was at that commit
    python scripts/sizes.py --top 15

Lines are counted as the file holds them (docstrings and comments included), a function from
its `def` to its last line.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "src/productgan"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="A git revision (default: the working tree).")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    files = sources(args.rev)
    modules = sorted(((text.count("\n"), path) for path, text in files.items()), reverse=True)
    funcs = sorted((f for path, text in files.items() for f in functions(path, text)), reverse=True)
    print(f"{len(files)} modules, {sum(n for n, _ in modules):,} lines ({args.rev or 'working tree'})")
    print("\nlargest modules:")
    for lines, path in modules[: args.top]:
        print(f"  {lines:5d}  {path}")
    print("\nlargest functions:")
    for lines, name in funcs[: args.top]:
        print(f"  {lines:5d}  {name}")


if __name__ == "__main__":
    main()
