"""The controller sits above planning, control (the agents' client), its store and core: no import cycle
among its modules, nothing above it imported (cli, cluster, experiments), and nothing of the simulator
(a sim backend implements the Backend Protocol from the sim side). Nothing below imports the controller."""

from __future__ import annotations

from tests.control.test_imports import SRC, _cycle, _graph, _imports

ABOVE_OR_BESIDE = ("edgemigrate.cli", "edgemigrate.cluster", "edgemigrate.experiments", "edgemigrate.sim",
                   "edgemigrate.envs", "edgemigrate.policies")


def test_controller_modules_import_each_other_without_cycles() -> None:
    graph = _graph("controller")
    assert "edgemigrate.controller.deployment" in graph["edgemigrate.controller.service"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_controller_imports_no_layer_above_it_and_no_simulator() -> None:
    for f in (SRC / "controller").rglob("*.py"):
        bad = sorted(i for i in _imports(f) if i.startswith(ABOVE_OR_BESIDE))
        assert not bad, f"{f.name} imports {bad}"


def test_nothing_below_imports_the_controller() -> None:
    for package in ("core", "engine", "testbed", "control", "planning", "costs", "sim"):
        for f in (SRC / package).rglob("*.py"):
            bad = sorted(i for i in _imports(f) if i.startswith("edgemigrate.controller"))
            assert not bad, f"{package}/{f.name} imports {bad}"
