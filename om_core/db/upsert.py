"""``INSERT … ON CONFLICT DO NOTHING``, which both databases speak but SQLAlchemy spells per
dialect."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["insert_unless_exists"]


def insert_unless_exists(
    conn: AsyncConnection, table: Table, *unique: str
) -> postgresql.Insert | sqlite.Insert:
    """An insert into ``table`` that does nothing when a row with the same ``unique`` columns
    exists (no error, so a PostgreSQL transaction survives it)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(unique))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(unique))
