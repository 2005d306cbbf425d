"""Apply and check schema migrations from code: the ``om db`` commands, start-up, tests.

Alembic's commands are synchronous. They run on a connection of our own async engine through
``AsyncConnection.run_sync``, and ``migrations/env.py`` takes that connection from
``config.attributes["connection"]``; so they work inside a running event loop, with no second
loop or thread. Each upgrade or downgrade runs in one transaction, on SQLite too: a failure
leaves the schema as it was. Concurrent runs against one database wait for each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from om_core.config import mask_url
from om_core.db.session import create_engine

__all__ = [
    "NotMigratedError",
    "alembic_config",
    "check_migrated",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]

#: Key of the PostgreSQL advisory lock that makes service instances starting together with
#: auto-migrate upgrade one after the other instead of racing on the same DDL.
_PG_MIGRATION_LOCK_KEY = 0x6F6D_6D69_6772  # "ommigr"


class NotMigratedError(Exception):
    """The database schema is not the one this code was written for."""

    def __init__(self, url: str, current: str | None, expected: str, *, known: bool) -> None:
        self.current = current
        self.expected = expected
        where = f"database at {mask_url(url)}"
        if known:
            shown = current or "none (empty database)"
            message = (
                f"{where} is at revision {shown}, code expects {expected}: "
                "run `om db upgrade` (or set OM_DB_AUTO_MIGRATE=true)"
            )
        else:
            message = (
                f"{where} is at revision {current}, which this code does not know "
                f"(it expects {expected}): the database was migrated by a newer version; "
                "run that version, or downgrade the database with it"
            )
        super().__init__(message)


def _script_location() -> Path:
    """The directory of the installed ``migrations`` package, wherever the process runs from."""
    spec = find_spec("migrations")
    # Search locations rather than ``__file__``: an editable install may present the package
    # as a namespace package, whose path also lists non-directory placeholders.
    for entry in (spec.submodule_search_locations or []) if spec else []:
        location = Path(entry)
        if (location / "env.py").is_file():
            return location
    raise RuntimeError("the migration scripts (package `migrations`) are not installed")


def alembic_config(url: str) -> Config:
    """An alembic configuration for ``url``, using the scripts of the installed package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_script_location()))
    # Config values go through ConfigParser interpolation: a %-escaped password must survive.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The revision the code expects the database to be at."""
    head = ScriptDirectory(str(_script_location())).get_current_head()
    if head is None:
        raise RuntimeError("no migration scripts found")
    return head


def _migration_engine(url: str) -> AsyncEngine:
    # On SQLite, create_engine takes over BEGIN (BEGIN IMMEDIATE): the whole migration is one
    # transaction, so a crash halfway cannot leave tables without a version row.
    return create_engine(url)


_process_locks: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()


def _process_lock() -> asyncio.Lock:
    """Alembic keeps the running migration in module globals: one command per process at once.

    One lock per event loop, since an asyncio lock cannot be shared between loops.
    """
    loop = asyncio.get_running_loop()
    lock = _process_locks.get(loop)
    if lock is None:
        lock = _process_locks[loop] = asyncio.Lock()
    return lock


async def _run_command(url: str, action: Callable[[Config, str], None], revision: str) -> None:
    cfg = alembic_config(url)

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        action(cfg, revision)

    engine = _migration_engine(url)
    try:
        async with _process_lock(), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Other processes (service instances starting together) wait here until this
                # transaction ends; then they find the work done.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
                )
            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    await _run_command(url, command.upgrade, revision)


async def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision``; ``base`` drops every table."""
    await _run_command(url, command.downgrade, revision)


async def current_revision(url: str) -> str | None:
    """The revision the database is at; ``None`` when it was never migrated."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


async def check_migrated(url: str) -> None:
    """Raise :class:`NotMigratedError` unless the database is at :func:`head_revision`."""
    current = await current_revision(url)
    expected = head_revision()
    if current == expected:
        return
    script = ScriptDirectory(str(_script_location()))
    known = current is None or current in {rev.revision for rev in script.walk_revisions()}
    raise NotMigratedError(url, current, expected, known=known)
