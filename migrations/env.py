"""Alembic environment for the Order Manager schema.

:mod:`om_core.db.migrate` runs alembic on a connection of our own async engine and passes it in
``config.attributes["connection"]``, so migrations run inside the caller's event loop (the service
and the tests already have one). Without such a connection (alembic's own CLI) this module
opens an engine on ``sqlalchemy.url`` and drives it with its own loop, as alembic's async
template does.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import om_core.db.models  # noqa: F401  (registers every table on SQLModel.metadata)
from om_core.db.session import create_engine
from om_core.db.types import DecimalType, UTCDateTime

config = context.config
target_metadata = SQLModel.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our column types so that generated scripts stay readable and importable."""
    if type_ != "type":
        return False
    if isinstance(obj, DecimalType | UTCDateTime):
        autogen_context.imports.add("import om_core.db.types")
        return f"om_core.db.types.{type(obj).__name__}()"
    if isinstance(obj, AutoString):
        # SQLModel's str fields; a plain String keeps migrations free of sqlmodel internals.
        length = getattr(obj.impl, "length", None)
        return "sa.String()" if length is None else f"sa.String(length={length})"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_item=render_item,
        # The default comparison compiles each model type for the live dialect, so
        # DecimalType is compared as the NUMERIC(38, 18) or VARCHAR(64) it really creates.
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit the SQL (``alembic upgrade --sql``) instead of running it."""
    url = config.get_main_option("sqlalchemy.url")
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=bool(url and url.startswith("sqlite")),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    # SQLite cannot ALTER most things in place; batch mode copies the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or run migrations through om_core.db.migrate")
    asyncio.run(run_async_migrations(url))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
