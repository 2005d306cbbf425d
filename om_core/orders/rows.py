"""Core statements on ``orders`` for the placement hot path.

The ORM costs several times a plain statement per row; placing an order runs these instead,
and records the order's history itself (the history listener only sees ORM flushes).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Table, func, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from om_core.db.models import Order, SignalOrderRelationship
from om_core.db.types import utcnow
from om_core.orders import history
from om_core.orders.status import IN_DOUBT, OrderStatus

__all__ = ["ORDERS", "accept_in_doubt", "insert_intent"]

ORDERS: Table = Order.__table__  # type: ignore[attr-defined]
_RELATIONSHIPS: Table = SignalOrderRelationship.__table__  # type: ignore[attr-defined]
_COLUMNS = [c.name for c in ORDERS.columns if c.name != "id"]
_IN_DOUBT = [s.value for s in IN_DOUBT]


async def insert_intent(conn: AsyncConnection, order: Order) -> int:
    """Insert the intent row, its signal relationship and first history row; sets ``order.id``."""
    values: dict[str, Any] = {name: getattr(order, name) for name in _COLUMNS}
    result = await conn.execute(insert(ORDERS).values(**values).returning(ORDERS.c.id))
    order_id = int(result.scalar_one())
    order.id = order_id
    if order.signal_id is not None:
        await conn.execute(
            insert(_RELATIONSHIPS).values(
                signal_id=order.signal_id, order_id=order_id, leg=order.leg, created_at=utcnow()
            )
        )
    await history.record(conn, order.client_order_id, order.status, order.filled_qty)
    return order_id


async def accept_in_doubt(
    conn: AsyncConnection,
    order_id: int,
    exchange_order_id: str | None,
    status: OrderStatus | None,
) -> Row[Any] | None:
    """Move an order out of doubt: the exchange has it. The updated row, or ``None`` when the
    order was not in doubt any more (nothing changed then)."""
    result = await conn.execute(
        update(ORDERS)
        .where(ORDERS.c.id == order_id, ORDERS.c.status.in_(_IN_DOUBT))
        .values(
            status=(status or OrderStatus.SUBMITTED).value,
            exchange_order_id=func.coalesce(ORDERS.c.exchange_order_id, exchange_order_id),
            updated_at=utcnow(),
        )
        .returning(*ORDERS.c)
    )
    row = result.first()
    if row is not None:
        await history.record(conn, row.client_order_id, row.status, row.filled_qty)
    return row
