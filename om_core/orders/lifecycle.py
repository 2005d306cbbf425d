"""Moments in an order's life that more than one path reaches (placement, lookup, stream)."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from om_core.db.models import Order, SignalRecord
from om_core.db.session import AsyncSession
from om_core.db.types import utcnow
from om_core.events.outbox import add_event, insert_events
from om_core.events.payloads import EventType, new_event, order_payload
from om_core.orders.rows import accept_in_doubt
from om_core.orders.status import IN_DOUBT, OrderStatus
from om_core.signals.store import SignalStatus
from om_plugins.types import Rejection

__all__ = ["accept_order", "mark_accepted", "settle_signal"]

_SIGNALS: Table = SignalRecord.__table__  # type: ignore[attr-defined]


async def mark_accepted(
    session: AsyncSession,
    order: Order,
    exchange_order_id: str | None,
    status: OrderStatus | None = None,
) -> bool:
    """The exchange has the order. Emits ``order.created`` exactly once, on leaving doubt."""
    if exchange_order_id and not order.exchange_order_id:
        order.exchange_order_id = exchange_order_id
    if order.status not in IN_DOUBT:
        return False
    order.status = status or OrderStatus.SUBMITTED
    order.updated_at = utcnow()
    add_event(
        session,
        new_event(EventType.ORDER_CREATED, signal_id=order.signal_id, order=order_payload(order)),
    )
    await settle_signal(session, order, accepted=True)
    return True


async def accept_order(
    conn: AsyncConnection,
    order_id: int,
    exchange_order_id: str | None,
    status: OrderStatus | None = None,
) -> bool:
    """:func:`mark_accepted` in Core statements, for an order known by id.

    False when the order had left doubt already (nothing changed; the caller settles the
    exchange id through :func:`mark_accepted`, which needs the ORM row).
    """
    row = await accept_in_doubt(conn, order_id, exchange_order_id, status)
    if row is None:
        return False
    order = cast(Order, row)  # a Row reads like the ORM object: order_payload takes either
    await insert_events(
        conn,
        new_event(EventType.ORDER_CREATED, signal_id=row.signal_id, order=order_payload(order)),
    )
    if row.signal_id is not None:
        await conn.execute(
            update(_SIGNALS)
            .where(
                _SIGNALS.c.signal_id == row.signal_id,
                _SIGNALS.c.status == SignalStatus.PROCESSING.value,
            )
            .values(status=SignalStatus.PLACED.value, updated_at=utcnow())
        )
    return True


async def settle_signal(
    session: AsyncSession, order: Order, *, accepted: bool, code: str = "", message: str = ""
) -> None:
    if order.signal_id is None:
        return
    signal = (
        await session.exec(
            select(SignalRecord)
            .where(col(SignalRecord.signal_id) == order.signal_id)
            .with_for_update()
        )
    ).one_or_none()
    if signal is None or signal.status != SignalStatus.PROCESSING:
        return
    if accepted:
        signal.status = SignalStatus.PLACED
        signal.updated_at = utcnow()
        return
    siblings = (
        await session.exec(
            select(col(Order.status)).where(
                col(Order.signal_id) == order.signal_id, col(Order.id) != order.id
            )
        )
    ).all()
    if any(s != OrderStatus.REJECTED for s in siblings):
        return  # another leg is placed or still in doubt: the signal's outcome is not this one
    reason = Rejection(code=code or "EXCHANGE_REJECTED", message=message, plugin="exchange")
    # The order.rejected event already tells the story; the signal row keeps the reason.
    signal.status = SignalStatus.REJECTED
    signal.reasons = [
        {"plugin": reason.plugin, "code": reason.code, "message": reason.message, "details": {}}
    ]
    signal.updated_at = utcnow()
