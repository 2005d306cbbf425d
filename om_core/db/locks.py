"""Serialize work on one key (a symbol, a position) across tasks and service instances.

PostgreSQL: a transaction-scoped advisory lock, released by commit or rollback (never a
session lock: SQLAlchemy's pool would hand the still-locked connection to someone else).
SQLite: the embedded mode is one process, so an in-process lock per key suffices; SQLite
itself allows a single writer anyway.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from om_core.db.session import AsyncSession, SessionFactory

__all__ = ["RollBack", "locked_transaction", "try_xact_lock"]


class RollBack(Exception):
    """Raise inside :func:`locked_transaction` to undo everything it did (dry runs)."""


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
async def locked_transaction(factory: SessionFactory, key: str) -> AsyncIterator[AsyncSession]:
    """A session in a transaction that holds the lock on ``key`` until it commits.

    Commits on normal exit, rolls back on an exception.
    """
    async with factory() as session:
        if _is_postgres(session):
            async with session.begin():
                conn = await session.connection()
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
                )
                yield session
            return
        async with _local_lock(key), session.begin():
            yield session


async def try_xact_lock(session: AsyncSession, key: str) -> bool:
    """Take the transaction-scoped lock on ``key`` if free (PostgreSQL); always True on SQLite."""
    if not _is_postgres(session):
        return True
    conn = await session.connection()
    result = await conn.execute(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
    )
    return bool(result.scalar())
