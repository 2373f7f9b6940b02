from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgemigrate.core.config import apply_overrides, load_into, parse_override
from edgemigrate.core.errors import ConfigError
from edgemigrate.scenarios.scenario import Scenario, load_scenario


@dataclass(frozen=True, slots=True)
class Inner:
    rate_mbit: float = 1.0
    pair: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True, slots=True)
class Outer:
    name: str = "x"
    count: int = 1
    inner: Inner = field(default_factory=Inner)


def test_unknown_key_gets_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"inner\.rate_mbits: unknown key \(did you mean 'rate_mbit'\?\)"):
        load_into(Outer, {"inner": {"rate_mbits": 3}})


def test_types_are_checked_and_converted() -> None:
    out = load_into(Outer, {"count": 3, "inner": {"rate_mbit": 2, "pair": [1, 2]}})
    assert out.inner.rate_mbit == 2.0 and out.inner.pair == (1.0, 2.0) and out.count == 3
    with pytest.raises(ConfigError, match=r"count: expected an integer"):
        load_into(Outer, {"count": "three"})
    with pytest.raises(ConfigError, match=r"inner.pair: expected 2 values"):
        load_into(Outer, {"inner": {"pair": [1, 2, 3]}})


def test_overrides() -> None:
    assert parse_override("inner.rate_mbit=5") == (["inner", "rate_mbit"], 5)
    assert parse_override('name=abc') == (["name"], "abc")
    out = apply_overrides({}, ["inner.rate_mbit=5", "count=2"], Outer)
    assert load_into(Outer, out).inner.rate_mbit == 5.0
    with pytest.raises(ConfigError, match=r"--set inner.rate_mbi: unknown key \(did you mean 'rate_mbit'\?\)"):
        apply_overrides({}, ["inner.rate_mbi=1"], Outer)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("count")


def test_bundled_default_loads_and_validates(tmp_path: Path) -> None:
    sc = load_scenario("default", ["sim.n_steps=7", "users.count=12"], seed=9)
    assert isinstance(sc, Scenario) and sc.sim.n_steps == 7 and sc.users.count == 12 and sc.seed == 9
    with pytest.raises(ConfigError, match="unknown scenario 'defualt' \\(did you mean 'default'\\?\\)"):
        load_scenario("defualt")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sim]\ndt_s = -1\n")
    with pytest.raises(ConfigError, match="bad.toml: sim: sim.dt_s must be > 0"):
        load_scenario(str(bad))
    broken = tmp_path / "broken.toml"
    broken.write_text("[sim\n")
    with pytest.raises(ConfigError, match="broken.toml: invalid TOML"):
        load_scenario(str(broken))
