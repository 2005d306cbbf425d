"""Engine and session factory for PostgreSQL (asyncpg) and the embedded SQLite file."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = ["AsyncSession", "SessionFactory", "create_engine", "create_session_factory"]

SessionFactory = async_sessionmaker[AsyncSession]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (the API) run while the engine writes; busy_timeout waits for the
    # writer lock instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    # In WAL mode NORMAL keeps every commit across an application crash (what the embedded
    # mode is for); only a power loss can take the last commits. Server deployments use
    # PostgreSQL, whose commits are fully synchronous.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _manual_transactions(dbapi_conn: Any, _record: Any) -> None:
    # Take BEGIN over from the sqlite3 module, which would commit DDL as it goes and begins
    # lazily at the first write, letting two transactions read the same row and both act.
    dbapi_conn.isolation_level = None


def _begin_immediate(connection: Any) -> None:
    # Hold SQLite's single write lock from the first statement: transactions serialize as
    # PostgreSQL's SELECT … FOR UPDATE would make them.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        # SQLite has one writer. One connection, handed out in turn by the pool's asyncio
        # queue, beats several connections fighting over the file lock with sleeping retries.
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "connect", _manual_transactions)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    from om_core.orders import history

    history.install()
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
