"""The controller's central store: hosts, base stations, users, placements, measurements, actions.

Open it from a URL with :func:`open_store`: ``sqlite:///relative.db`` / ``sqlite:////absolute.db`` (the
default: embedded, nothing to set up), ``sqlite://:memory:`` (tests), or
``postgresql://user@host:port/db`` for deployments with many edge hosts. Both back ends hold the same
schema (:mod:`.schema`, versioned) and enforce the same rules; the action state machine is in
:mod:`.rows`.
"""

from __future__ import annotations

from edgemigrate.controller.store.errors import (
    ConflictError,
    IllegalTransitionError,
    NotFoundError,
    SchemaVersionError,
    StoreError,
)
from edgemigrate.controller.store.rows import (
    IN_FLIGHT,
    TRANSITIONS,
    Action,
    ActionKind,
    ActionState,
    BaseStation,
    BsRssi,
    CheckpointKind,
    CheckpointRecord,
    DelaySample,
    Host,
    HostReport,
    HostRole,
    HostState,
    MuReport,
    Placement,
    RssiSample,
    TaskDelay,
    User,
    check_transition,
    new_action_id,
)
from edgemigrate.controller.store.schema import SCHEMA_VERSION
from edgemigrate.controller.store.store import Store, open_store

__all__ = [
    "IN_FLIGHT", "SCHEMA_VERSION", "TRANSITIONS", "Action", "ActionKind", "ActionState", "BaseStation",
    "BsRssi", "CheckpointKind", "CheckpointRecord", "ConflictError", "DelaySample", "Host", "HostReport",
    "HostRole", "HostState", "IllegalTransitionError", "MuReport", "NotFoundError", "Placement",
    "RssiSample", "SchemaVersionError", "Store", "StoreError", "TaskDelay", "User", "check_transition",
    "new_action_id", "open_store",
]
