"""Several instances, one deployment: who runs the singletons and which partitions.

:mod:`om_core.cluster.locks` holds the PostgreSQL session locks, :mod:`om_core.cluster.coordinator`
balances exclusive work over the live instances and fails it over.
"""

from __future__ import annotations

from om_core.cluster.coordinator import Coordinator, Group, Slot, quota
from om_core.cluster.locks import LocalLocks, LockSession, PgLocks, Snapshot

__all__ = [
    "Coordinator",
    "Group",
    "LocalLocks",
    "LockSession",
    "PgLocks",
    "Slot",
    "Snapshot",
    "quota",
]
