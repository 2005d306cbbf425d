"""The migration scripts build exactly the schema the models declare, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, make_url
from sqlmodel import SQLModel

import om_core.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from om_core.db.migrate import (
    NotMigratedError,
    alembic_config,
    check_migrated,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from om_core.db.session import create_engine

T = TypeVar("T")

MODEL_TABLES = set(SQLModel.metadata.tables)


async def _on_connection(url: str, fn: Callable[[Connection], T]) -> T:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(fn)
    finally:
        await engine.dispose()


def _table_names(connection: Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


async def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    await upgrade(db_url)
    assert await _on_connection(db_url, _table_names) == MODEL_TABLES | {"alembic_version"}

    await downgrade(db_url)
    assert await _on_connection(db_url, _table_names) <= {"alembic_version"}
    assert await current_revision(db_url) is None

    await upgrade(db_url)
    assert await _on_connection(db_url, _table_names) == MODEL_TABLES | {"alembic_version"}


async def test_current_revision_is_none_then_head(db_url: str) -> None:
    assert await current_revision(db_url) is None
    await upgrade(db_url)
    assert await current_revision(db_url) == head_revision()


async def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    await upgrade(db_url)
    await upgrade(db_url)
    assert await current_revision(db_url) == head_revision()


async def test_check_migrated_refuses_empty_database_then_passes(db_url: str) -> None:
    with pytest.raises(NotMigratedError) as excinfo:
        await check_migrated(db_url)
    message = str(excinfo.value)
    assert head_revision() in message
    assert "om db upgrade" in message
    assert "OM_DB_AUTO_MIGRATE=true" in message
    assert excinfo.value.current is None

    await upgrade(db_url)
    await check_migrated(db_url)


async def test_check_migrated_refuses_a_revision_from_newer_code(db_url: str) -> None:
    await upgrade(db_url)

    def pretend_newer(connection: Connection) -> None:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_newer'"))
        connection.commit()

    await _on_connection(db_url, pretend_newer)
    with pytest.raises(NotMigratedError, match="newer version") as excinfo:
        await check_migrated(db_url)
    assert excinfo.value.current == "ffff_newer"
    assert "om db upgrade" not in str(excinfo.value)


async def test_not_migrated_error_hides_the_password(pg_url: str) -> None:
    # The test server trusts local connections, so any password is accepted.
    url = make_url(pg_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    with pytest.raises(NotMigratedError) as excinfo:
        await check_migrated(url)
    assert "s3cret-pw" not in str(excinfo.value)
    assert ":***@" in str(excinfo.value)


async def test_concurrent_upgrades_do_not_collide(db_url: str) -> None:
    # Two service instances starting together with auto-migrate on. Unserialised, they can
    # deadlock between PostgreSQL and alembic's globals, hence the deadline.
    # return_exceptions: let both finish, so a failure in one leaves no task behind.
    async with asyncio.timeout(30):
        results = await asyncio.gather(upgrade(db_url), upgrade(db_url), return_exceptions=True)
    assert list(results) == [None, None]
    assert await current_revision(db_url) == head_revision()


async def test_concurrent_upgrades_of_two_databases_in_one_process(tmp_path: Path) -> None:
    urls = [f"sqlite+aiosqlite:///{tmp_path / name}" for name in ("a.db", "b.db")]
    async with asyncio.timeout(30):
        results = await asyncio.gather(*(upgrade(url) for url in urls), return_exceptions=True)
    assert list(results) == [None, None]
    for url in urls:
        assert await _on_connection(url, _table_names) == MODEL_TABLES | {"alembic_version"}
        assert await current_revision(url) == head_revision()


async def test_failed_upgrade_leaves_the_database_as_it_was(db_url: str) -> None:
    # A table in the way makes the initial migration fail after it created several others.
    def block(connection: Connection) -> None:
        connection.execute(sa.text("CREATE TABLE outbox (id INTEGER PRIMARY KEY)"))
        connection.commit()

    await _on_connection(db_url, block)
    with pytest.raises(sa.exc.DatabaseError):
        await upgrade(db_url)
    assert await _on_connection(db_url, _table_names) == {"outbox"}
    assert await current_revision(db_url) is None


async def test_scripts_are_found_from_any_working_directory(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await upgrade(sqlite_url)
    assert await current_revision(sqlite_url) == head_revision()


def test_alembic_config_keeps_percent_escapes_in_the_url() -> None:
    url = "postgresql+asyncpg://om:p%40ss%25word@db.example:5432/om"
    assert alembic_config(url).get_main_option("sqlalchemy.url") == url


async def test_models_and_migrations_agree(db_url: str) -> None:
    await upgrade(db_url)

    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    assert await _on_connection(db_url, diff) == []


async def test_autogenerate_through_env_py_finds_nothing_to_do(db_url: str) -> None:
    """``alembic check`` with our env.py settings: a new revision would be empty."""
    await upgrade(db_url)
    cfg = alembic_config(db_url)

    def check(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.check(cfg)  # raises AutogenerateDiffsDetected on any difference

    await _on_connection(db_url, check)


async def test_autogenerate_detects_a_missing_table(db_url: str) -> None:
    """Guards the two tests above: the comparison does see a real difference."""
    await upgrade(db_url)

    def drop_and_diff(connection: Connection) -> list[Any]:
        connection.execute(sa.text("DROP TABLE trading_state"))
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    diff = await _on_connection(db_url, drop_and_diff)
    assert [(op[0], op[1].name) for op in diff] == [("add_table", "trading_state")]


async def test_autogenerate_detects_a_changed_money_type(pg_url: str) -> None:
    """Types are compared, not ignored: a money column narrowed by hand is reported."""
    await upgrade(pg_url)

    def narrow_and_diff(connection: Connection) -> list[Any]:
        connection.execute(sa.text("ALTER TABLE orders ALTER COLUMN qty TYPE NUMERIC(20, 8)"))
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    diff = await _on_connection(pg_url, narrow_and_diff)
    # Column changes come grouped per column: [[("modify_type", schema, table, column, ...)]]
    [[change]] = diff
    assert (change[0], change[2], change[3]) == ("modify_type", "orders", "qty")
