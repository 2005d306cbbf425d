"""Record every change of an order's status or filled quantity, whichever code made it.

A ``before_flush`` listener on the ORM session looks at new and changed :class:`Order` rows;
an ``after_flush`` listener inserts their :class:`OrderStatusChange` rows in the same
transaction. The few hot paths that change orders with Core statements instead of the ORM
call :func:`record` themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import event, insert, inspect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from om_core.db.models import Order, OrderStatusChange, table
from om_core.db.types import utcnow

__all__ = ["HISTORY", "install", "record"]

HISTORY = table(OrderStatusChange)


def _changed(order: Order) -> bool:
    state = inspect(order)
    return any(state.attrs[name].history.has_changes() for name in ("status", "filled_qty"))


_PENDING = "om_order_history"


def _collect(session: Session, _context: Any, _instances: Any) -> None:
    now = utcnow()
    # This flush's rows only: those of a flush that failed must not ride on the next one.
    rows: list[dict[str, Any]] = []
    session.info[_PENDING] = rows
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, Order) and (obj in session.new or _changed(obj)):
            rows.append(
                {
                    "client_order_id": obj.client_order_id,
                    "status": obj.status,
                    "filled_qty": obj.filled_qty,
                    "at": now,
                }
            )


def _write(session: Session, _context: Any) -> None:
    # One Core insert in the flush's own transaction: an ORM object per row would cost
    # several times the row.
    rows = session.info.pop(_PENDING, None)
    if rows:
        session.connection().execute(insert(HISTORY), rows)


def install() -> None:
    """Idempotent: every ORM session in the process records order history."""
    if not event.contains(Session, "before_flush", _collect):
        event.listen(Session, "before_flush", _collect)
        event.listen(Session, "after_flush", _write)


async def record(conn: AsyncConnection, changes: Sequence[tuple[str, str, Decimal]]) -> None:
    """History rows ``(client_order_id, status, filled_qty)`` for changes made with Core
    statements, which the listener cannot see."""
    if not changes:
        return
    now = utcnow()
    await conn.execute(
        insert(HISTORY),
        [{"client_order_id": c, "status": s, "filled_qty": q, "at": now} for c, s, q in changes],
    )
