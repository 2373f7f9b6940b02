"""The store's errors: one branch under :class:`~edgemigrate.core.errors.EdgeMigrateError`.

Bad values are :class:`~edgemigrate.core.errors.ValidationError` (raised before anything is written);
these are the failures that depend on what is already in the store or on the database itself.
"""

from __future__ import annotations

from edgemigrate.core.errors import EdgeMigrateError


class StoreError(EdgeMigrateError):
    """The store cannot do what was asked: unreachable database, bad URL, unknown schema, missing row."""


class NotFoundError(StoreError, KeyError):
    """A row the caller named (host, user, action, ...) is not in the store."""

    def __str__(self) -> str:
        # KeyError would quote the message; the CLI prints str(error) on one line as it is
        return str(self.args[0]) if self.args else ""


class SchemaVersionError(StoreError):
    """The database was written by a different (newer, or unknown) schema version."""


class IllegalTransitionError(StoreError):
    """An action state change the state machine does not allow (e.g. DONE -> RUNNING)."""


class ConflictError(StoreError):
    """Someone else changed the row first: an action is no longer in the state the caller saw, or
    another action for the same user and service is already in flight."""
