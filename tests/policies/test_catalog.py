"""The catalog registers every built-in policy; the modules it imports never import it back."""

from __future__ import annotations

import ast
from pathlib import Path

import edgemigrate.policies as policies_pkg
from edgemigrate.policies import POLICIES, BatchPolicy, make_policy

BUILT_IN = {"cloud", "de", "dep_soft", "down", "ga", "kube", "least_delay", "monkey", "nearest", "pso"}
POLICIES_DIR = Path(policies_pkg.__file__).parent


def test_every_built_in_policy_is_registered_and_builds() -> None:
    assert BUILT_IN <= set(POLICIES.names())
    for name in BUILT_IN:
        pol = make_policy(name, seed=0)
        assert isinstance(pol, BatchPolicy) and pol.name == name


def _edgemigrate_imports(path: Path) -> set[str]:
    """Modules imported at run time anywhere in ``path`` (inside functions too; not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    guards = [node for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)]
    type_only = {id(n) for guard in guards for stmt in guard.body for n in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {m for m in found if m.startswith("edgemigrate.policies")}


def test_the_protocol_module_imports_no_policy() -> None:
    # base.py is what every policy module imports; an import back from it closes a cycle
    assert _edgemigrate_imports(POLICIES_DIR / "base.py") == set()
    for path in [*POLICIES_DIR.glob("*.py"), *(POLICIES_DIR / "heuristics").glob("*.py"),
                 *(POLICIES_DIR / "optim").glob("*.py")]:
        if path.name != "__init__.py" and path.stem != "catalog":
            assert "edgemigrate.policies.catalog" not in _edgemigrate_imports(path), path
