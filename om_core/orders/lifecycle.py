"""Moments in an order's life that more than one path reaches (placement, lookup, stream)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from om_core.db.models import Order, SignalRecord
from om_core.db.session import AsyncSession
from om_core.db.types import utcnow
from om_core.events.outbox import add_event, insert_events
from om_core.events.payloads import EventType, new_event, order_payload
from om_core.orders.rows import accept_in_doubt
from om_core.orders.status import IN_DOUBT, OrderStatus
from om_core.signals.store import SIGNALS, SignalStatus
from om_plugins.types import Rejection

__all__ = ["accept_orders", "mark_accepted", "settle_signal"]

_PLACED = (
    update(SIGNALS)
    .where(
        SIGNALS.c.signal_id.in_(bindparam("signal_ids", expanding=True)),
        SIGNALS.c.status == SignalStatus.PROCESSING.value,
    )
    .values(status=SignalStatus.PLACED.value, updated_at=bindparam("now"))
)


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


async def accept_orders(
    conn: AsyncConnection,
    exchange_ids: Mapping[int, str | None],
    status: OrderStatus | None = None,
) -> dict[int, OrderStatus]:
    """:func:`mark_accepted` in Core statements, for orders known by id (order id → the
    exchange's id): a few statements however many orders.

    Returns the new status of each order that left doubt now. The others had left it
    already; the caller settles their exchange id through :func:`mark_accepted`.
    """
    rows = await accept_in_doubt(conn, exchange_ids, status)
    if not rows:
        return {}
    await insert_events(
        conn,
        *(
            new_event(EventType.ORDER_CREATED, signal_id=row["signal_id"], order=order_payload(row))
            for row in rows
        ),
    )
    signal_ids = [row["signal_id"] for row in rows if row["signal_id"] is not None]
    if signal_ids:
        await conn.execute(_PLACED, {"signal_ids": signal_ids, "now": utcnow()})
    return {row["id"]: OrderStatus(row["status"]) for row in rows}


async def settle_signal(
    session: AsyncSession, order: Order, *, accepted: bool, code: str = "", message: str = ""
) -> None:
    """The signal's outcome once its order was accepted or refused. A refusal's reason is
    the order's neutral code, with the exchange's own code in ``details``."""
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
    details = {"exchange_code": order.exchange_code} if order.exchange_code else {}
    # The order.rejected event already tells the story; the signal row keeps the reason.
    signal.status = SignalStatus.REJECTED
    signal.reasons = [
        {
            "plugin": reason.plugin,
            "code": reason.code,
            "message": reason.message,
            "details": details,
        }
    ]
    signal.updated_at = utcnow()
