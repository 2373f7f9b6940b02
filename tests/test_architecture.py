"""The shape of the code, checked from its source: no import cycles, the package graph in docs/ARCHITECTURE.md
is the one the imports draw, and functions stay short enough to read at once.

Imports are read statically (AST), including imports inside functions: a lazy import is still a dependency.
Only ``if TYPE_CHECKING:`` blocks are left out, because annotations are not a runtime dependency.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "edgemigrate"
ARCHITECTURE_MD = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"
MAX_FUNCTION_LINES = 80
# A longer function says why in its docstring, in these words.
LONG_FUNCTION_MARK = "Longer than 80 lines because"
GRAPH_BEGIN = "<!-- package-graph: begin -->"
GRAPH_END = "<!-- package-graph: end -->"
LAYERS_BEGIN = "<!-- layers: begin -->"
LAYERS_END = "<!-- layers: end -->"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PKG).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
        return {_owning_module(n, modules) for n in names if n.split(".")[0] == PKG}
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != PKG:
        return set()
    out = set()
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.add(sub if sub in modules else _owning_module(target, modules))
    return out


def _owning_module(name: str, modules: dict[str, Path]) -> str:
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (at any depth of the file, outside TYPE_CHECKING blocks)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        deps: set[str] = set()
        for node in _import_nodes(tree):
            deps |= _targets(module, path, node, modules)
        deps.discard(module)
        graph[module] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _package(module: str) -> str:
    """The top-level package of ``module``; "" for the package root and ``python -m edgemigrate``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else ""


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Top-level package -> the top-level packages it imports. ``edgemigrate/__init__`` (the version) is left
    out: every layer may read it."""
    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        a = _package(module)
        if not a:
            continue
        out.setdefault(a, set())
        for dep in deps:
            b = _package(dep)
            if b and b != a:
                out[a].add(b)
    return out


def render_package_graph(pgraph: dict[str, set[str]]) -> str:
    return "\n".join(f"{a} -> {', '.join(sorted(bs)) if bs else '(nothing)'}" for a, bs in sorted(pgraph.items()))


def _block(begin: str, end: str) -> list[str]:
    text = ARCHITECTURE_MD.read_text()
    block = text[text.index(begin) + len(begin):text.index(end)]
    lines = [ln.strip() for ln in block.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("```")]


def documented_package_graph() -> str:
    return "\n".join(_block(GRAPH_BEGIN, GRAPH_END))


def documented_layers() -> dict[str, int]:
    """Package -> its row in the layer picture (0 = top)."""
    rows: dict[str, int] = {}
    for line in _block(LAYERS_BEGIN, LAYERS_END):
        row, _, names = line.partition(":")
        for name in (n.strip() for n in names.split(",")):
            assert name not in rows, f"docs/ARCHITECTURE.md lists {name} in two layer rows"
            rows[name] = int(row)
    return rows


def test_no_import_cycle_in_src() -> None:
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles (counting lazy imports, not TYPE_CHECKING ones): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle() -> None:
    # The check above passes on an empty answer, so prove the finder sees cycles, lazy ones included.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("import x\nif TYPE_CHECKING:\n    import edgemigrate.y\ndef f():\n    import edgemigrate.z\n")
    names = sorted(a.name for n in _import_nodes(tree) if isinstance(n, ast.Import) for a in n.names)
    assert names == ["edgemigrate.z", "x"]


def test_architecture_md_package_graph_matches_the_imports() -> None:
    actual = render_package_graph(package_graph(import_graph()))
    assert documented_package_graph() == actual, (
        f"docs/ARCHITECTURE.md's package graph (between {GRAPH_BEGIN!r} and {GRAPH_END!r}) differs from the "
        f"imports; if the change is intended, update the diagram and paste this block:\n{actual}")


def test_every_import_points_to_a_lower_row_of_the_layer_picture() -> None:
    rows = documented_layers()
    pgraph = package_graph(import_graph())
    assert set(rows) == set(pgraph), (f"packages missing from the layer rows: {sorted(set(pgraph) - set(rows))}; "
                                      f"rows naming no package: {sorted(set(rows) - set(pgraph))}")
    upward = [f"{a} (row {rows[a]}) -> {b} (row {rows[b]})" for a, deps in pgraph.items() for b in deps
              if rows[b] <= rows[a]]
    assert not upward, "imports that do not point down the layer picture: " + ", ".join(sorted(upward))


def test_layers_only_import_downward() -> None:
    """The rules the diagram draws: the data plane never reaches the simulator side, and the reverse."""
    pgraph = package_graph(import_graph())
    simulator_side = {"sim", "envs", "policies", "scenarios", "experiments"}
    forbidden = {
        "core": set(pgraph) - {"core"},
        "engine": simulator_side | {"control", "testbed", "cli"},
        "testbed": set(pgraph) - {"core", "testbed"},
        "sim": {"envs", "policies", "experiments", "engine", "control", "cli"},
    }
    bad = {a: sorted(pgraph.get(a, set()) & f) for a, f in forbidden.items() if pgraph.get(a, set()) & f}
    assert not bad, f"imports that point up or across: {bad}"
    assert not any("cli" in deps for deps in pgraph.values()), "nothing imports the CLI"


def _long_functions() -> list[str]:
    out = []
    for path in sorted((SRC / PKG).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES and LONG_FUNCTION_MARK not in (ast.get_docstring(node) or ""):
                out.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_no_function_over_80_lines_without_a_stated_reason() -> None:
    long = _long_functions()
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines; split them, or say why not in the docstring "
                      f"with {LONG_FUNCTION_MARK!r}: " + ", ".join(long))


def test_checked_blocks_exist_once() -> None:
    text = ARCHITECTURE_MD.read_text()
    for marker in (GRAPH_BEGIN, GRAPH_END, LAYERS_BEGIN, LAYERS_END):
        assert len(re.findall(re.escape(marker), text)) == 1, marker
