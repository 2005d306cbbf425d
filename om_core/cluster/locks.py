"""Exclusive work slots held as PostgreSQL session-level advisory locks.

Each instance keeps one dedicated connection (outside the pool: a session lock belongs to
its connection, and a pooled connection would carry it to whoever uses it next). On it the
instance holds

* a *shared* lock on ``(NAMESPACE, 0)`` for as long as it is alive: the holders of that lock
  are the instances of the group, so every instance sees the same member list;
* an *exclusive* lock on ``(NAMESPACE, slot)`` for each slot it runs (the singletons, a
  router, a partition).

A lock lives exactly as long as its connection. An instance killed with ``kill -9`` closes
its socket, so PostgreSQL ends the session and frees its locks at once. For a frozen process
or a lost host the session is ended by the server after ``session_timeout`` seconds:
``idle_session_timeout`` (the instance queries every ``check_interval``, far more often) and
TCP keepalives. An instance that cannot complete a query within the timeout gives up its
slots on its own side too (:mod:`om_core.cluster.coordinator`).

The two-integer lock form keeps these apart from the per-symbol transaction locks (one
``bigint`` key each) and makes them readable in ``pg_locks`` (``classid`` = namespace,
``objid`` = slot, ``objsubid`` = 2).

On SQLite (one process, embedded) :class:`LocalLocks` grants everything: the instance is
always the only member.
"""

from __future__ import annotations

import abc
import inspect
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MEMBERS_SLOT", "NAMESPACE", "LocalLocks", "LockSession", "PgLocks", "Snapshot"]

log = logging.getLogger(__name__)

#: ``classid`` of every lock this module takes ("OMC1").
NAMESPACE = 0x4F4D4331
#: Held shared by every live instance.
MEMBERS_SLOT = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Who is alive and who holds which slot, as one consistent read."""

    me: int
    #: Member ids (PostgreSQL backend pids of the coordination sessions), sorted.
    members: tuple[int, ...]
    #: slot → member holding it.
    holders: Mapping[int, int] = field(default_factory=dict)


class LockSession(abc.ABC):
    """One instance's membership and slot locks."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the session and join the members; raises when the database is unreachable."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End the session: every lock it held is released."""

    @abc.abstractmethod
    async def snapshot(self) -> Snapshot:
        """Members and slot holders now; doubles as the session's health check."""

    @abc.abstractmethod
    async def try_lock(self, slot: int) -> bool:
        """Take ``slot`` if nobody holds it."""

    @abc.abstractmethod
    async def unlock(self, slot: int) -> None: ...


class LocalLocks(LockSession):
    """One process alone: every slot is free and this process is the only member."""

    def __init__(self) -> None:
        self._held: set[int] = set()

    async def connect(self) -> None:
        self._held.clear()

    async def close(self) -> None:
        self._held.clear()

    async def snapshot(self) -> Snapshot:
        return Snapshot(me=1, members=(1,), holders=dict.fromkeys(self._held, 1))

    async def try_lock(self, slot: int) -> bool:
        self._held.add(slot)
        return True

    async def unlock(self, slot: int) -> None:
        self._held.discard(slot)


_SNAPSHOT = """
SELECT pid, objid::bigint AS slot, mode
FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 2 AND granted
  AND classid = $1::bigint::oid
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


class PgLocks(LockSession):
    """The locks on a dedicated asyncpg connection to the service's PostgreSQL database."""

    def __init__(self, database_url: str, *, session_timeout: float, name: str = "") -> None:
        self._url = database_url
        self._timeout = session_timeout
        self._name = name or f"om:{socket.gethostname()}:{os.getpid()}"
        self._conn: Any = None
        self.me = 0

    async def connect(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        await self.close()
        conn = await asyncpg.connect(
            **_connect_args(self._url),
            timeout=self._timeout,
            command_timeout=self._timeout,
            server_settings={"application_name": self._name[:63]},
        )
        try:
            await self._server_side_timeouts(conn)
            await conn.execute("SELECT pg_advisory_lock_shared($1, $2)", NAMESPACE, MEMBERS_SLOT)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self.me = conn.get_server_pid()

    async def _server_side_timeouts(self, conn: Any) -> None:
        """Let the server end this session (and free its locks) when we go silent."""
        import asyncpg

        idle_ms = int(self._timeout * 1000)
        keepalive = max(1, int(self._timeout / 4))
        settings = {
            # PostgreSQL 14+: a session idle this long is ended (a frozen or cut-off instance).
            "idle_session_timeout": f"{idle_ms}ms",
            # A dead host is noticed by TCP keepalives (no effect over a Unix socket).
            "tcp_keepalives_idle": str(keepalive),
            "tcp_keepalives_interval": str(keepalive),
            "tcp_keepalives_count": "3",
        }
        for name, value in settings.items():
            try:
                await conn.execute(f"SET {name} = '{value}'")
            except asyncpg.PostgresError as exc:
                log.warning("coordination session: cannot set %s (%s)", name, exc)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.close(timeout=self._timeout)
        except Exception:
            conn.terminate()

    def _require(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            raise ConnectionError("the coordination session is closed")
        return self._conn

    async def snapshot(self) -> Snapshot:
        rows = await self._require().fetch(_SNAPSHOT, NAMESPACE)
        members = sorted(
            {r["pid"] for r in rows if r["slot"] == MEMBERS_SLOT and r["mode"] == "ShareLock"}
        )
        holders = {
            int(r["slot"]): int(r["pid"])
            for r in rows
            if r["slot"] != MEMBERS_SLOT and r["mode"] == "ExclusiveLock"
        }
        return Snapshot(me=self.me, members=tuple(members), holders=holders)

    async def try_lock(self, slot: int) -> bool:
        return bool(
            await self._require().fetchval("SELECT pg_try_advisory_lock($1, $2)", NAMESPACE, slot)
        )

    async def unlock(self, slot: int) -> None:
        await self._require().fetchval("SELECT pg_advisory_unlock($1, $2)", NAMESPACE, slot)


def _connect_args(url: str) -> dict[str, Any]:
    """asyncpg.connect() arguments for a ``postgresql+asyncpg://`` URL, as SQLAlchemy reads
    it (host, port, user, password, database, ssl, …)."""
    import asyncpg
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
    from sqlalchemy.engine import make_url

    dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
    _, kwargs = dialect.create_connect_args(make_url(url))  # type: ignore[no-untyped-call]
    accepted = inspect.signature(asyncpg.connect).parameters
    return {k: v for k, v in kwargs.items() if k in accepted}
