"""Serialize work on one key (a symbol, a position) across tasks and service instances.

PostgreSQL: a transaction-scoped advisory lock, released by commit or rollback (never a
session lock: SQLAlchemy's pool would hand the still-locked connection to someone else).
SQLite: the embedded mode is one process, so an in-process lock per key suffices; SQLite
itself allows a single writer anyway.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

from sqlalchemy import text

from om_core.db.session import AsyncSession, SessionFactory

__all__ = ["RollBack", "locked_transaction", "symbol_lock_key", "try_xact_lock"]


def symbol_lock_key(category: str, symbol: str) -> str:
    """The lock decisions and order reports of one symbol share: a position is never read
    by a decision while a fill changes it, nor changed by two reports at once."""
    return f"om:symbol:{category}:{symbol}"


class RollBack(Exception):
    """Raise inside :func:`locked_transaction` to undo everything it did (dry runs)."""


_LOCK_ONE = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_LOCK_MANY = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) k"
)

_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))")

_local_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _local_lock(key: str) -> asyncio.Lock:
    lock = _local_locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _local_locks[key] = lock
    return lock


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


@asynccontextmanager
async def locked_transaction(
    factory: SessionFactory, key: str | Iterable[str]
) -> AsyncIterator[AsyncSession]:
    """A session in a transaction that holds the lock on ``key`` (or on each of several keys)
    until it commits.

    Several keys are locked in sorted order, so two transactions that lock overlapping sets
    cannot deadlock. Commits on normal exit, rolls back on an exception.
    """
    keys = sorted({key} if isinstance(key, str) else set(key))
    async with factory() as session:
        if _is_postgres(session):
            async with session.begin():
                conn = await session.connection()
                if len(keys) == 1:
                    await conn.execute(_LOCK_ONE, {"key": keys[0]})
                else:
                    # One round trip; unnest keeps the array's (sorted) order.
                    await conn.execute(_LOCK_MANY, {"keys": keys})
                yield session
            return
        async with AsyncExitStack() as stack:
            for one in keys:
                await stack.enter_async_context(_local_lock(one))
            async with session.begin():
                yield session


async def try_xact_lock(session: AsyncSession, key: str) -> bool:
    """Take the transaction-scoped lock on ``key`` if free (PostgreSQL); always True on SQLite."""
    if not _is_postgres(session):
        return True
    conn = await session.connection()
    result = await conn.execute(_TRY_LOCK, {"key": key})
    return bool(result.scalar())
