"""The control layer has no import cycles - none through function-level imports either - and never imports
a layer above it. ``if TYPE_CHECKING:`` imports (annotations only) do not count."""

from __future__ import annotations

import ast
from pathlib import Path

import edgemigrate

SRC = Path(edgemigrate.__file__).parent
ABOVE_CONTROL = ("edgemigrate.cluster", "edgemigrate.cli", "edgemigrate.experiments")


def _module(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it, except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # "from pkg import module"
    return out


def _graph(package: str) -> dict[str, set[str]]:
    files = sorted((SRC / package).rglob("*.py"))
    mods = {_module(f): f for f in files}
    return {m: {i for i in _imports(f) if i in mods and i != m} for m, f in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*path[path.index(n):], n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_control_modules_import_each_other_without_cycles() -> None:
    graph = _graph("control")
    assert "edgemigrate.control.source" in graph["edgemigrate.control.agent"]  # the graph sees real imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_source_side_never_imports_the_agent() -> None:
    assert "edgemigrate.control.agent" not in _imports(SRC / "control" / "source.py")


def test_control_imports_no_layer_above_it() -> None:
    for f in (SRC / "control").rglob("*.py"):
        bad = sorted(i for i in _imports(f) if i.startswith(ABOVE_CONTROL))
        assert not bad, f"{f.name} imports {bad}"


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_below_the_local_cluster_imports_it() -> None:
    # cluster/ starts real agents on the testbed: it sits above control and testbed, never below
    for package in ("core", "engine", "testbed", "control"):
        for f in (SRC / package).rglob("*.py"):
            bad = sorted(i for i in _imports(f) if i.startswith("edgemigrate.cluster"))
            assert not bad, f"{package}/{f.name} imports {bad}"
