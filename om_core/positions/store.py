"""PositionManager's database side: apply a fill to the stored position and snapshot it.

Callers hold the symbol's lock (see :mod:`om_core.updates.apply`), so read-modify-write of a
position row is never concurrent.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlmodel import col, select

from om_core.db.models import Position, PositionSnapshot
from om_core.db.session import AsyncSession
from om_core.db.types import utcnow
from om_core.positions.math import PositionState, apply_fill, unrealized_pnl

__all__ = [
    "PositionKey",
    "apply_fill_to_position",
    "get_or_create_position",
    "snapshot",
    "snapshot_values",
]

#: (category, symbol, position_idx): what identifies a position.
PositionKey = tuple[str, str, int]


async def get_or_create_position(
    session: AsyncSession,
    category: str,
    symbol: str,
    position_idx: int,
    known: dict[PositionKey, Position] | None = None,
) -> Position:
    """The position's row, locked; ``known`` holds rows this transaction locked already."""
    key = (category, symbol, position_idx)
    if known is not None and key in known:
        return known[key]
    row = (
        await session.exec(
            select(Position)
            .where(
                col(Position.category) == category,
                col(Position.symbol) == symbol,
                col(Position.position_idx) == position_idx,
            )
            .with_for_update()
        )
    ).first()
    if row is None:
        row = Position(category=category, symbol=symbol, position_idx=position_idx)
        session.add(row)
        await session.flush()  # its id is needed by the snapshot
    if known is not None:
        known[key] = row
    return row


async def apply_fill_to_position(
    session: AsyncSession,
    *,
    category: str,
    symbol: str,
    position_idx: int,
    side: str,
    qty: Decimal,
    price: Decimal,
    fee: Decimal,
    known: dict[PositionKey, Position] | None = None,
    snapshots: list[dict[str, Any]] | None = None,
) -> Position:
    """Apply one fill and snapshot the result: in ``session``, or, given ``snapshots``, as
    values appended there for the caller to insert (with a Core statement, batched)."""
    row = await get_or_create_position(session, category, symbol, position_idx, known)
    state = apply_fill(
        PositionState(row.size, row.avg_entry_price, row.realized_pnl, row.fees_paid),
        side=side,
        qty=qty,
        price=price,
        fee=fee,
        inverse=category == "inverse",
    )
    row.size = state.size
    row.avg_entry_price = state.avg_entry_price
    row.realized_pnl = state.realized_pnl
    row.fees_paid = state.fees_paid
    row.updated_at = utcnow()
    if snapshots is None:
        snapshot(session, row, reason="fill")
    else:
        snapshots.append(snapshot_values(row, reason="fill"))
    return row


def snapshot(
    session: AsyncSession, row: Position, *, reason: str, mark: Decimal | None = None
) -> PositionSnapshot:
    snap = PositionSnapshot(**snapshot_values(row, reason=reason, mark=mark))
    session.add(snap)
    return snap


def snapshot_values(row: Position, *, reason: str, mark: Decimal | None = None) -> dict[str, Any]:
    """The columns of a ``position_snapshots`` row for ``row`` as it is now."""
    mark = mark if mark is not None else row.mark_price
    unrealized = None
    if mark is not None:
        state = PositionState(row.size, row.avg_entry_price, row.realized_pnl, row.fees_paid)
        unrealized = unrealized_pnl(state, mark, inverse=row.category == "inverse")
    assert row.id is not None
    return {
        "position_id": row.id,
        "category": row.category,
        "symbol": row.symbol,
        "position_idx": row.position_idx,
        "size": row.size,
        "avg_entry_price": row.avg_entry_price,
        "realized_pnl": row.realized_pnl,
        "fees_paid": row.fees_paid,
        "mark_price": mark,
        "unrealized_pnl": unrealized,
        "reason": reason,
        "created_at": utcnow(),
    }
