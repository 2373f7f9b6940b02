from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import pytest

from edgemigrate.core.config import Limit, apply_overrides, check_limits, load_into, parse_override
from edgemigrate.core.errors import ConfigError, ValidationError
from edgemigrate.scenarios.scenario import Scenario, bundled_scenarios, load_scenario
from edgemigrate.sim.config import SimParams


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
    with pytest.raises(ConfigError, match=r"bad.toml: sim.dt_s: expected a number in \(0, 86400\], got -1$"):
        load_scenario(str(bad))
    broken = tmp_path / "broken.toml"
    broken.write_text("[sim\n")
    with pytest.raises(ConfigError, match="broken.toml: invalid TOML"):
        load_scenario(str(broken))


@dataclass(frozen=True, slots=True)
class Limited:
    count: Annotated[int, Limit(1, 100)] = 1
    rate: Annotated[float, Limit(0.0, 10.0, lo_open=True)] = 1.0
    span: Annotated[tuple[float, float], Limit(0.0, 5.0, ordered=True)] = (0.0, 1.0)
    rates: Annotated[tuple[float, ...], Limit(0.0, None, lo_open=True, items=(1, 3))] = (1.0,)
    free: float = 0.0

    def __post_init__(self) -> None:
        check_limits(self, "limited")


@pytest.mark.parametrize(("table", "message"), [
    ({"count": 0}, "limited.count: expected an integer in [1, 100], got 0"),
    ({"count": 1e20}, "limited.count: expected an integer in [1, 100], got 1e+20"),
    ({"count": 2.5}, "limited.count: expected an integer, got 2.5"),
    ({"rate": 0}, "limited.rate: expected a number in (0, 10], got 0"),
    ({"rate": math.nan}, "limited.rate: expected a finite number, got nan"),
    ({"free": -math.inf}, "limited.free: expected a finite number, got -inf"),
    ({"span": [3.0, 1.0]}, "limited.span: expected [low, high] with low <= high, got [3.0, 1.0]"),
    ({"span": [0.0, 6.0]}, "limited.span[1]: expected a number in [0, 5], got 6.0"),
    ({"rates": []}, "limited.rates: expected a list of 1 to 3 values, got 0"),
    ({"rates": [1.0, -1.0]}, "limited.rates[1]: expected a number > 0, got -1.0"),
])
def test_limits_are_checked_where_values_are_loaded(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_into(Limited, table, "limited")
    assert str(exc.value) == message


def test_limits_hold_for_objects_built_in_code_and_for_overrides() -> None:
    with pytest.raises(ValidationError, match=r"^limited.rate: expected a finite number, got nan$"):
        Limited(rate=math.nan)
    with pytest.raises(ValidationError, match=r"^sim.dt_s: expected a finite number, got nan$"):
        SimParams(dt_s=math.nan)  # NaN passes the `<= 0` check it used to rely on
    with pytest.raises(ConfigError, match=r"^--set count: expected an integer in \[1, 100\], got -3$"):
        apply_overrides({}, ["count=-3"], Limited)
    with pytest.raises(ConfigError, match=r"^--set rate: expected a finite number, got inf$"):
        apply_overrides({}, ["rate=inf"], Limited)
    assert apply_overrides({}, ["count=7"], Limited) == {"count": 7}


def _numeric_fields(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """(key, annotation) of every number or tuple of numbers in a config dataclass tree."""
    out = []
    for name, hint in get_type_hints(cls, include_extras=True).items():
        base = get_args(hint)[0] if get_origin(hint) is Annotated else hint
        if dataclasses.is_dataclass(base):
            out += _numeric_fields(base, f"{prefix}{name}.")
        elif base in (int, float) or (get_origin(base) is tuple and set(get_args(base)) <= {int, float, Ellipsis}):
            out.append((f"{prefix}{name}", hint))
    return out


def test_every_number_of_a_scenario_has_a_range() -> None:
    fields = _numeric_fields(Scenario)
    assert len(fields) > 40 and "sim.dt_s" in dict(fields) and "workload.data_bytes" in dict(fields)
    unbounded = [key for key, hint in fields
                 if get_origin(hint) is not Annotated
                 or not any(isinstance(m, Limit) and m.lo is not None and m.hi is not None for m in get_args(hint))]
    assert unbounded == []


def test_every_bundled_scenario_is_within_its_ranges() -> None:
    for name in bundled_scenarios():
        assert isinstance(load_scenario(name), Scenario)


def test_scenario_errors_name_their_origin(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[users]\ncount = 10\n')
    cases = [
        (["users.count=-5"], None, "--set users.count: expected an integer in [1, 100000], got -5"),
        (["nodes.count=0"], None, "--set nodes.count: expected an integer in [1, 2000], got 0"),
        (["sim.n_steps=abc"], None, "--set sim.n_steps: expected an integer, got 'abc'"),
        (["sim.dt_s=nan"], None, "--set sim.dt_s: expected a finite number, got nan"),
        ([], -1, "--seed: expected an integer in [0, 9223372036854775807], got -1"),
        # only the two values together are wrong, and neither is in the file
        (["nodes.idle_power_w=300"], None,
         f"{good} with --set nodes.idle_power_w: nodes.max_power_w: expected >= nodes.idle_power_w (300), got 250"),
    ]
    for overrides, seed, message in cases:
        with pytest.raises(ConfigError) as exc:
            load_scenario(str(good), overrides, seed)
        assert str(exc.value) == message
    bad = tmp_path / "bad.toml"
    bad.write_text('[users]\ncount = 1e20\n[nodes]\nmax_power_w = 50.0\n')
    with pytest.raises(ConfigError, match=r"^.*bad.toml: users.count: expected an integer in \[1, 100000\], got 1e\+20$"):
        load_scenario(str(bad))
    bad.write_text('[nodes]\nmax_power_w = 50.0\n')
    with pytest.raises(ConfigError, match=r"bad.toml: nodes.max_power_w: expected >= nodes.idle_power_w"):
        load_scenario(str(bad), ["users.count=3"])  # the file is at fault, not the override


def test_unreadable_scenario_files_are_one_line_errors(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('name = "Mühle"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml: not UTF-8 text \(bad byte at offset 9\)"):
        load_scenario(str(latin1))
    with pytest.raises(ConfigError, match=r"is a folder; expected a scenario TOML file"):
        load_scenario(str(tmp_path))
