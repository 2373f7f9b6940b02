"""Click options generated from :class:`PPOConfig`: every field becomes ``--field-name`` with its doc as help.

Usage in a command module::

    @click.command()
    @ppo_options
    def train(**kw):
        cfg = ppo_config_from_options(kw)   # only the options the user gave override the defaults

Tuples are comma lists (``--deep-hidden 64,64``), booleans are ``--x/--no-x`` flags, ``None`` defaults accept
``none``. Values are validated by ``PPOConfig`` itself, whose errors are one-line ``EdgeMigrateError`` messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import click

from edgemigrate.core.errors import ConfigError
from edgemigrate.policies.rl.ppo import PPOConfig

F = TypeVar("F", bound=Callable[..., Any])
PREFIX = "ppo_"


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"expected a comma-separated list of integers, got '{text}'") from None


def _optional_float(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"expected a number or 'none', got '{text}'") from None


def ppo_options(func: F) -> F:
    """Add one option per ``PPOConfig`` field; parameters arrive as ``ppo_<field>`` (``None`` when not given)."""
    helps = PPOConfig.help()
    for f in reversed(dataclasses.fields(PPOConfig)):
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        dest = PREFIX + f.name
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = f"{helps[f.name]} [default: {shown}]"
        if isinstance(default, bool):
            opt = click.option(f"{flag}/--no-{f.name.replace('_', '-')}", dest, default=None, help=text)
        elif isinstance(default, tuple):
            opt = click.option(flag, dest, default=None, metavar="N,N,...", help=text)
        elif default is None:
            opt = click.option(flag, dest, default=None, metavar="FLOAT|none", help=text)
        else:
            opt = click.option(flag, dest, type=type(default), default=None, help=text)
        func = opt(func)
    return func


def ppo_config_from_options(options: dict[str, Any], base: PPOConfig | None = None) -> PPOConfig:
    """Pop the ``ppo_*`` entries of a click kwargs dict and apply the given ones to ``base`` (or the defaults)."""
    base = base or PPOConfig()
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(PPOConfig):
        value = options.pop(PREFIX + f.name, None)
        if value is None:
            continue
        if isinstance(f.default, tuple):
            value = _int_tuple(value)
        elif f.default is None:
            value = _optional_float(value)
        changes[f.name] = value
    return dataclasses.replace(base, **changes)
