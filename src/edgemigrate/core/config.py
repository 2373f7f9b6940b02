"""Strict config loading: TOML tables -> frozen dataclasses, unknown keys rejected with suggestions.

``load_into(cls, table, where)`` converts a (nested) dict into dataclass ``cls``: every key must be a field
(else ``ConfigError: <where>.<key>: unknown key (did you mean ...)``), values are checked against the
field's annotation (float/int/str/bool, tuples of those, nested dataclasses). Numbers must be finite, and a
field annotated ``Annotated[int, Limit(1, 2000)]`` must also lie in that range (for a tuple: every element),
so a bad value is reported where it is loaded as ``<where>.<key>: expected ..., got ...`` instead of failing
deep inside whatever uses it. ``apply_overrides`` applies ``--set a.b=value`` strings (values parsed as TOML,
else taken as strings) and checks each value the same way, naming the override (``--set a.b: ...``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

from edgemigrate.core.errors import ConfigError, ValidationError
from edgemigrate.core.registry import suggest

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Limit:
    """The allowed range of a number in a config, attached as ``Annotated[float, Limit(0, 10, lo_open=True)]``.

    ``None`` leaves that side open-ended. For a tuple-valued field the range applies to every element,
    ``ordered`` additionally asks a ``[low, high]`` pair for ``low <= high`` and ``items`` bounds the length of
    a variable-length tuple.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    ordered: bool = False
    items: tuple[int, int] | None = None

    def contains(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def describe(self) -> str:
        lo, hi = _num(self.lo), _num(self.hi)
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {lo}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {hi}"
        return "finite"


def _num(x: float | None) -> str:
    return str(x) if isinstance(x, int) or x is None else f"{x:g}"


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, expected a TOML file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start}); TOML files must be UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _limited(value: Any, base: Any, limits: list[Limit], where: str) -> Any:
    """Convert ``value`` to ``base`` and check it against ``limits`` (every element, for a tuple)."""
    out = _convert(value, base, where)
    if out is None or not limits:
        return out
    kind = "an integer" if base is int else "a number"
    for lim in limits:
        if lim.items is not None and isinstance(out, tuple) and not lim.items[0] <= len(out) <= lim.items[1]:
            raise ConfigError(f"{where}: expected a list of {lim.items[0]} to {lim.items[1]} values, "
                              f"got {len(out)}")
        items = list(out) if isinstance(out, tuple) else [out]
        raw = list(value) if isinstance(out, tuple) else [value]
        for i, (v, r) in enumerate(zip(items, raw, strict=True)):
            if not lim.contains(v):
                at = f"{where}[{i}]" if isinstance(out, tuple) else where
                raise ConfigError(f"{at}: expected {kind} {lim.describe()}, got {r!r}")
        if lim.ordered and isinstance(out, tuple) and len(out) == 2 and out[0] > out[1]:
            raise ConfigError(f"{where}: expected [low, high] with low <= high, got {list(value)!r}")
    return out


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin is Annotated:
        base, *extras = get_args(hint)
        return _limited(value, base, [e for e in extras if isinstance(e, Limit)], where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for a in args:
            try:
                return _convert(value, a, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return load_into(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        targs = get_args(hint)
        if len(targs) == 2 and targs[1] is Ellipsis:
            return tuple(_convert(v, targs[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(targs) != len(value):
            raise ConfigError(f"{where}: expected {len(targs)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(targs, value, strict=True)))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # TOML accepts nan and inf; no setting of ours means them
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is typing.Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{where}: '{value}' is not one of {list(get_args(hint))}"
                              + suggest(str(value), [str(a) for a in get_args(hint)]))
        return value
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=True)


def convert_field(cls: type, name: str, value: Any, where: str) -> Any:
    """Check and convert ``value`` for field ``name`` of dataclass ``cls``; errors are blamed on ``where``."""
    return _convert(value, _hints(cls)[name], where)


def check_limits(obj: Any, prefix: str) -> None:
    """Raise :class:`ValidationError` if a field of dataclass ``obj`` annotated with a :class:`Limit` is out of
    range or not finite; for ``__post_init__``, so objects built in code are held to what files are."""
    for f in dataclasses.fields(obj):
        hint = _hints(type(obj))[f.name]
        if get_origin(hint) is Annotated:
            try:
                _convert(getattr(obj, f.name), hint, f"{prefix}.{f.name}")
            except ConfigError as exc:
                raise ValidationError(str(exc)) from None


def load_into(cls: type[T], table: dict[str, Any], where: str = "") -> T:
    if not isinstance(table, dict):
        raise ConfigError(f"{where or 'config'}: expected a table")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    kwargs = {}
    for key, value in table.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"{path}: unknown key{suggest(key, names)}")
        kwargs[key] = _convert(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        msg = str(exc)
        # checks across fields name their own keys ("nodes.max_power_w: ..."); do not repeat the table
        if not where or msg.startswith(f"{where}."):
            raise ConfigError(msg) from None
        raise ConfigError(f"{where or 'config'}: {msg}") from None


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-able data (tuples -> lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected KEY=VALUE, e.g. sim.n_steps=100")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set '{text}': bad key '{key}'")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(table: dict[str, Any], overrides: list[str], cls: type) -> dict[str, Any]:
    """Apply ``--set`` overrides to a raw table, checking each key path against dataclass ``cls`` and each
    value against its field (type and range), so a bad value is blamed on the override, not the file."""
    out = _deepcopy(table)
    for text in overrides:
        parts, value = parse_override(text)
        node, hint_cls = out, cls
        for i, part in enumerate(parts):
            names = {f.name: f for f in dataclasses.fields(hint_cls)}
            where = ".".join(parts[: i + 1])
            if part not in names:
                raise ConfigError(f"--set {where}: unknown key{suggest(part, names)}")
            if i == len(parts) - 1:
                convert_field(hint_cls, part, value, f"--set {where}")
                node[part] = value
            else:
                hint = get_type_hints(hint_cls)[part]
                if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
                    raise ConfigError(f"--set {where}: is a value, not a table")
                sub = node.setdefault(part, {})
                if not isinstance(sub, dict):
                    raise ConfigError(f"--set {where}: the scenario sets '{where}' to {sub!r}, not a table")
                node = sub
                hint_cls = hint
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d
