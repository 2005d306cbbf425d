"""One signal: its outcome, every rejection reason, its orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from sqlmodel import col, select

from api.deps import ReadKey, SessionDep, api_v1_router
from api.errors import ApiError
from api.routes.orders import order_out, reasons_out
from api.schemas import SignalOut, error_responses
from om_core.db.models import Order, SignalRecord

__all__ = ["router"]

router = api_v1_router("signals")


@router.get(
    "/signals/{signal_id:path}",
    summary="A signal's outcome, rejection reasons and orders",
    responses=error_responses(404, 422),
)
async def get_signal(
    _key: ReadKey,
    session: SessionDep,
    signal_id: Annotated[
        str, Path(description="The producer's `signal_id`.", examples=["trend-2026-01-05-BTC"])
    ],
) -> SignalOut:
    record = None
    # Longer ids or NUL cannot have been stored; no need to ask the database.
    if 0 < len(signal_id) <= 128 and "\x00" not in signal_id:
        record = (
            await session.exec(select(SignalRecord).where(col(SignalRecord.signal_id) == signal_id))
        ).one_or_none()
    if record is None:
        raise ApiError(404, "signal_not_found", f"no signal {signal_id[:128]!r}")
    orders = (
        await session.exec(
            select(Order)
            .where(col(Order.signal_id) == signal_id)
            .order_by(col(Order.leg), col(Order.id))
        )
    ).all()
    return SignalOut(
        signal_id=record.signal_id,
        status=record.status,
        symbol=record.symbol,
        side=record.side,
        category=record.category,
        reasons=reasons_out(record),
        payload=record.payload if isinstance(record.payload, dict) else {},
        signal_created_at=record.signal_created_at,
        received_at=record.received_at,
        updated_at=record.updated_at,
        orders=[order_out(o) for o in orders],
    )
