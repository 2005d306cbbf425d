"""PositionManager's database side: fills reach positions as per-order contributions.

A position is the fold of its contributions (:class:`~om_core.db.models.PositionContribution`):
each is one order's fills taken together, applied to the position as it was before them.
While an order's contribution is the position's latest, a new fill of that order joins it
and the position is recomputed from the contribution's starting point: an order's fills give
the same position whichever order they arrive in, duplicates and corrections included. A
fill of another order starts a new contribution; so does any fill after a reconciliation
set the position to the exchange's figures.

Callers hold the symbol's lock (see :mod:`om_core.updates.apply`), so read-modify-write of a
position row is never concurrent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlmodel import col, select

from om_core.db.models import Order, Position, PositionContribution, PositionSnapshot
from om_core.db.session import AsyncSession
from om_core.db.types import strip_zeros, utcnow
from om_core.positions.math import PositionState, apply_trade, unrealized_pnl

__all__ = [
    "PositionKey",
    "TradeDelta",
    "add_fees",
    "contribute",
    "counts_for",
    "get_or_create_position",
    "set_from_exchange",
    "snapshot",
    "snapshot_values",
]

#: (category, symbol, position_idx): what identifies a position.
PositionKey = tuple[str, str, int]
_ZERO = Decimal(0)


@dataclass(slots=True)
class TradeDelta:
    """What some fills of one order add to its contribution (all may be zero or, when real
    executions replace an inferred fill, the value alone may change)."""

    qty: Decimal = _ZERO
    value: Decimal = _ZERO
    #: Fees in the PnL coin, and the part of them paid in the (spot) base coin, in base coin.
    fees_settled: Decimal = _ZERO
    base_fee: Decimal = _ZERO
    fees: dict[str, Decimal] = field(default_factory=dict)

    def add(self, other: TradeDelta) -> None:
        self.qty += other.qty
        self.value += other.value
        self.fees_settled += other.fees_settled
        self.base_fee += other.base_fee
        for currency, amount in other.fees.items():
            self.fees[currency] = self.fees.get(currency, _ZERO) + amount

    def negated(self) -> TradeDelta:
        return TradeDelta(
            -self.qty,
            -self.value,
            -self.fees_settled,
            -self.base_fee,
            {c: -a for c, a in self.fees.items()},
        )

    def fees_only(self) -> TradeDelta:
        """Its fees alone: what a fill the position's reconciled size holds still adds."""
        return TradeDelta(fees_settled=self.fees_settled, fees=dict(self.fees))

    @property
    def empty(self) -> bool:
        return not (self.qty or self.value or self.fees_settled or self.base_fee) and not any(
            self.fees.values()
        )


def add_fees(base: Mapping[str, str], extra: Mapping[str, Decimal]) -> dict[str, str]:
    """Per-currency fee totals (stored as strings in JSON) plus ``extra``."""
    out = {c: Decimal(a) for c, a in base.items()}
    for currency, amount in extra.items():
        out[currency] = out.get(currency, _ZERO) + amount
    return {c: format(strip_zeros(a), "f") for c, a in sorted(out.items()) if a}


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


async def _latest(
    session: AsyncSession,
    row: Position,
    known: dict[int, PositionContribution] | None,
) -> PositionContribution | None:
    if row.contribution_id is None:
        return None
    if known is not None and row.contribution_id in known:
        return known[row.contribution_id]
    found = await session.get(PositionContribution, row.contribution_id, with_for_update=True)
    if found is not None and known is not None:
        known[row.contribution_id] = found
    return found


async def contribute(
    session: AsyncSession,
    order: Order,
    delta: TradeDelta,
    *,
    contract_size: Decimal = Decimal(1),
    positions: dict[PositionKey, Position] | None = None,
    contributions: dict[int, PositionContribution] | None = None,
    snapshots: list[dict[str, Any]] | None = None,
) -> tuple[Position, PositionContribution]:
    """Add ``delta`` (fills of ``order``) to the order's position; snapshot the result in
    ``session``, or, given ``snapshots``, as values appended there for the caller to insert."""
    assert order.id is not None
    row = await get_or_create_position(
        session, order.category, order.symbol, order.position_idx, positions
    )
    latest = await _latest(session, row, contributions)
    assert row.id is not None
    if latest is None or latest.order_id != order.id:
        latest = PositionContribution(
            position_id=row.id,
            order_id=order.id,
            side=order.side,
            before_size=row.size,
            before_avg_entry_price=row.avg_entry_price,
            before_realized_pnl=row.realized_pnl,
            before_fees_paid=row.fees_paid,
            before_fees=dict(row.fees or {}),
        )
        session.add(latest)
        await session.flush()  # the position points at it
        assert latest.id is not None
        row.contribution_id = latest.id
        if contributions is not None:
            contributions[latest.id] = latest
    latest.qty += delta.qty
    latest.value += delta.value
    latest.fees_settled += delta.fees_settled
    latest.base_fee += delta.base_fee
    latest.fees = add_fees(latest.fees or {}, delta.fees)
    latest.updated_at = utcnow()
    state = apply_trade(
        PositionState(
            latest.before_size,
            latest.before_avg_entry_price,
            latest.before_realized_pnl,
            latest.before_fees_paid,
        ),
        side=latest.side,
        qty=latest.qty,
        value=latest.value,
        fees_settled=latest.fees_settled,
        base_fee=latest.base_fee,
        inverse=order.category == "inverse",
        contract_size=contract_size,
    )
    row.size = state.size
    row.avg_entry_price = state.avg_entry_price
    row.realized_pnl = state.realized_pnl
    row.fees_paid = state.fees_paid
    row.fees = add_fees(latest.before_fees, {c: Decimal(a) for c, a in (latest.fees or {}).items()})
    row.updated_at = utcnow()
    if snapshots is None:
        snapshot(session, row, reason="fill")
    else:
        snapshots.append(snapshot_values(row, reason="fill"))
    return row, latest


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


def set_from_exchange(row: Position, as_of: datetime) -> None:
    """The position was set to the exchange's figures as of ``as_of`` (reconciliation):
    later fills start a contribution afresh, and fills executed until then — the exchange's
    figures hold them — move it no more."""
    row.contribution_id = None
    row.synced_at = as_of


def counts_for(row: Position | None, executed_at: datetime | None) -> bool:
    """Whether a fill executed at ``executed_at`` still moves the position ``row``."""
    if row is None or row.synced_at is None or executed_at is None:
        return True
    return executed_at > row.synced_at
