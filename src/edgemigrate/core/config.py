"""Strict config loading: TOML tables -> frozen dataclasses, unknown keys rejected with suggestions.

``load_into(cls, table, where)`` converts a (nested) dict into dataclass ``cls``: every key must be a field
(else ``ConfigError: <where>.<key>: unknown key (did you mean ...)``), values are checked against the
field's annotation (float/int/str/bool, tuples of those, nested dataclasses). ``apply_overrides`` applies
``--set a.b=value`` strings (values parsed as TOML, else taken as strings).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from edgemigrate.core.errors import ConfigError, ValidationError
from edgemigrate.core.registry import suggest

T = TypeVar("T")


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
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


def load_into(cls: type[T], table: dict[str, Any], where: str = "") -> T:
    if not isinstance(table, dict):
        raise ConfigError(f"{where or 'config'}: expected a table")
    hints = get_type_hints(cls)
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
        raise ConfigError(f"{where or 'config'}: {exc}") from None


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
    """Apply ``--set`` overrides to a raw table, checking each key path against dataclass ``cls``."""
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
                node[part] = value
            else:
                hint = get_type_hints(hint_cls)[part]
                if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
                    raise ConfigError(f"--set {where}: is a value, not a table")
                node = node.setdefault(part, {})
                hint_cls = hint
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d
