"""docs/architecture.md is the map of the package, and this keeps it true: every module and test
file is on it, every path it names exists, and no module imports from a tier above its own."""

from __future__ import annotations

import re

import pytest
from test_imports import PACKAGE, import_graph

ROOT = PACKAGE.parent.parent
MAP = ROOT / "docs" / "architecture.md"
# Old import paths kept for one release with a deprecation warning (CHANGELOG.md): on the map in
# prose, outside the tiers.
DEPRECATED = {"productgan.sampling"}


def section(title: str) -> str:
    text = MAP.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def named_paths(text: str) -> set[str]:
    """The paths in the first column of the map's tables. A bare file name in a cell lives in the
    folder of the path before it (`evaluator/config.py`, `network.py`)."""
    paths = set()
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        folder = ""
        for token in re.findall(r"`([^`]+)`", line.split(" | ")[0]):
            if "/" in token.rstrip("/"):
                folder = token.rsplit("/", 1)[0] + "/"
                paths.add(token)
            else:
                paths.add(token if token.endswith("/") else folder + token)
    return paths


def tiers() -> dict[str, int]:
    """Wing (`train/` or `losses.py`) -> its tier, from the diagram."""
    block = section("Wings and tiers").split("```")[1]
    found = {}
    for line in block.splitlines():
        match = re.match(r"\s*(\d)\s+(.+?)\s{3,}", line)
        if match:
            found.update({wing: int(match[1]) for wing in match[2].split()})
    return found


def wing(module: str) -> str:
    parts = module.split(".")[1:]
    return parts[0] + ("/" if (PACKAGE / parts[0]).is_dir() else ".py")


MODULE_PATHS = named_paths(section("Modules"))
TEST_PATHS = named_paths(section("Tests"))


def test_every_module_is_on_the_map():
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    deprecated = {m.split(".", 1)[1].replace(".", "/") + ".py" for m in DEPRECATED}
    missing = sorted(modules - MODULE_PATHS - deprecated)
    assert not missing, f"modules missing from docs/architecture.md: {', '.join(missing)}"


def test_every_test_file_is_on_the_map():
    files = {f"tests/{p.name}" for p in (ROOT / "tests").glob("*.py")}
    missing = sorted(files - TEST_PATHS)
    assert not missing, f"test files missing from docs/architecture.md: {', '.join(missing)}"


def test_every_path_on_the_map_exists():
    gone = sorted(p for p in MODULE_PATHS if not (PACKAGE / p).exists())
    gone += sorted(p for p in TEST_PATHS if not (ROOT / p).exists())
    assert not gone, f"docs/architecture.md names paths that do not exist: {', '.join(gone)}"


def test_every_wing_has_a_tier():
    placed = tiers()
    wings = {wing(m) for m in import_graph() if m != "productgan" and m not in DEPRECATED}
    assert not sorted(wings - set(placed)), f"wings not in the tier diagram: {sorted(wings - set(placed))}"
    assert not sorted(set(placed) - wings), f"the tier diagram names no such wing: {sorted(set(placed) - wings)}"


def test_no_module_imports_from_a_higher_tier():
    placed = tiers()
    upward = [
        f"{module} (tier {placed[wing(module)]}) imports {target} (tier {placed[wing(target)]})"
        for module, targets in import_graph().items()
        if module != "productgan" and module not in DEPRECATED
        for target in targets
        if target != "productgan" and placed[wing(target)] > placed[wing(module)]
    ]
    assert not upward, "imports from a higher tier: " + "; ".join(upward)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("| `evaluator/config.py`, `network.py` | x |", {"evaluator/config.py", "evaluator/network.py"}),
        ("| `errors.py` | x |", {"errors.py"}),
        ("| `serve/static/` | x `not/this.py` |", {"serve/static/"}),
    ],
)
def test_the_map_reader_reads_a_cell(cell, expected):
    assert named_paths(cell) == expected


def test_the_tier_check_can_fail(monkeypatch):
    """A module that reached upward would be caught: run/ importing train/ is."""
    graph = import_graph()
    graph["productgan.run.folder"] = graph["productgan.run.folder"] | {"productgan.train.loop"}
    monkeypatch.setattr(__import__(__name__), "import_graph", lambda: graph)
    with pytest.raises(AssertionError, match="run.folder .tier 3. imports productgan.train.loop .tier 4."):
        test_no_module_imports_from_a_higher_tier()
