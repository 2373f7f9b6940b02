"""The error hierarchy. Every error we raise on purpose derives from :class:`EdgeMigrateError`.

The CLI prints ``str(error)`` on one line and exits non-zero, never a traceback, so messages
must name the file/line/key at fault and what was expected.
"""

from __future__ import annotations


class EdgeMigrateError(Exception):
    """Root of every error edgemigrate raises deliberately."""


class ValidationError(EdgeMigrateError, ValueError):
    """A value is out of its allowed range or inconsistent with another value."""


class ConfigError(EdgeMigrateError):
    """A scenario/config file or ``--set`` override is wrong (unknown key, bad type, bad value)."""


class DataFormatError(EdgeMigrateError):
    """An input data file (trace, tower list, layer list) is malformed.

    Carries the location so the message reads ``path:line: reason``.
    """

    def __init__(self, path: object, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, int | None, str]]:
        # keeps the error picklable across process pools (the default would call cls(message))
        return (type(self), (self.path, self.line, self.reason))


class EngineError(EdgeMigrateError):
    """The real migration engine failed (CRIU, runtime, transport, protocol)."""
