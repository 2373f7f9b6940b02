"""The ``edgemigrate`` command. Nothing imports this package.

Each command group lives in its own module (``cli/sim.py``, ``cli/data.py``, ``cli/testbed.py``,
``cli/engine.py``, ``cli/experiment.py``) and is attached here. User mistakes (:class:`EdgeMigrateError`) are printed as
one line and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from edgemigrate import __version__
from edgemigrate.core.errors import EdgeMigrateError

# (module, attribute) of each command or group; imported lazily so `--help` stays fast and a
# missing optional dependency of one group does not break the others.
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edgemigrate.cli.sim", "run"),
    "scenarios": ("edgemigrate.cli.sim", "scenarios"),
    "data": ("edgemigrate.cli.data", "data"),
    "doctor": ("edgemigrate.cli.testbed", "doctor"),
    "testbed": ("edgemigrate.cli.testbed", "testbed"),
    "agent": ("edgemigrate.cli.engine", "agent"),
    "migrate": ("edgemigrate.cli.engine", "migrate"),
    "controller": ("edgemigrate.cli.controller", "controller"),
    "experiment": ("edgemigrate.cli.experiment", "experiment"),
    "mu": ("edgemigrate.cli.mu", "mu"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in _COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # group not built yet
                return None
            raise
        cmd = getattr(module, attr, None)
        return cmd if isinstance(cmd, click.Command) else None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgemigrate")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Mobility-aware container migration at the network edge.

    Simulate users moving on real traces and decide when and where to move their services
    (`run`, `experiment`), or move a running container between edge hosts for real
    (`testbed`, `agent`, `migrate`).
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="edgemigrate", standalone_mode=False)
    except EdgeMigrateError as exc:
        click.echo(f"edgemigrate: error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("edgemigrate: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("edgemigrate: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
