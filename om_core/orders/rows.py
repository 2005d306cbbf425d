"""Core statements on ``orders`` for the placement hot path.

The ORM costs several times a plain statement per row, and placement runs for every signal:
these write a whole batch of intents, or of acceptances, in a fixed handful of statements,
and record the orders' history themselves (the history listener only sees ORM flushes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import case, func, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from om_core.db.models import Order, SignalOrderRelationship, table
from om_core.db.types import utcnow
from om_core.orders import history
from om_core.orders.status import IN_DOUBT, OrderStatus

__all__ = ["ORDERS", "accept_in_doubt", "insert_intents"]

ORDERS = table(Order)
_RELATIONSHIPS = table(SignalOrderRelationship)
_COLUMNS = [c.name for c in ORDERS.columns if c.name != "id"]
_IN_DOUBT = [s.value for s in IN_DOUBT]


async def insert_intents(conn: AsyncConnection, orders: Sequence[Order]) -> None:
    """Insert intent rows with their signal relationships and first history rows; sets
    each ``order.id``."""
    if not orders:
        return
    result = await conn.execute(
        insert(ORDERS).returning(ORDERS.c.id, ORDERS.c.client_order_id),
        [{name: getattr(order, name) for name in _COLUMNS} for order in orders],
    )
    ids = {client_id: int(order_id) for order_id, client_id in result.all()}
    for order in orders:
        order.id = ids[order.client_order_id]
    now = utcnow()
    links = [
        {"signal_id": o.signal_id, "order_id": o.id, "leg": o.leg, "created_at": now}
        for o in orders
        if o.signal_id is not None
    ]
    if links:
        await conn.execute(insert(_RELATIONSHIPS), links)
    await history.record(conn, [(o.client_order_id, o.status, o.filled_qty) for o in orders])


async def accept_in_doubt(
    conn: AsyncConnection,
    exchange_ids: Mapping[int, str | None],
    status: OrderStatus | None,
) -> list[dict[str, Any]]:
    """Move orders out of doubt: the exchange has them (``exchange_ids``: order id → the
    exchange's id). Returns the updated rows; an order not in doubt any more is left alone
    and missing from the result."""
    values: dict[str, Any] = {
        "status": (status or OrderStatus.SUBMITTED).value,
        "updated_at": utcnow(),
    }
    given = {order_id: eid for order_id, eid in exchange_ids.items() if eid}
    if given:
        # An exchange id already known is kept; otherwise each order gets its own.
        values["exchange_order_id"] = func.coalesce(
            ORDERS.c.exchange_order_id, case(given, value=ORDERS.c.id, else_=None)
        )
    result = await conn.execute(
        update(ORDERS)
        .where(ORDERS.c.id.in_(list(exchange_ids)), ORDERS.c.status.in_(_IN_DOUBT))
        .values(**values)
        .returning(*ORDERS.c)
    )
    rows = [dict(row._mapping) for row in result.all()]
    await history.record(
        conn, [(row["client_order_id"], row["status"], row["filled_qty"]) for row in rows]
    )
    return rows
