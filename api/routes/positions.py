"""Positions now, with unrealized PnL, and their history of snapshots."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Annotated

from fastapi import Path, Query
from sqlmodel import col, select

from api.deps import ReadKey, ServiceDep, SessionDep, api_v1_router
from api.pagination import (
    DEFAULT_LIMIT,
    CursorParam,
    LimitParam,
    UTCTimestamp,
    decode_cursor,
    keyset,
    next_cursor,
)
from api.schemas import PositionList, PositionOut, SnapshotOut, SnapshotPage, error_responses
from om_core.db.models import Position, PositionSnapshot
from om_core.positions.math import PositionState, unrealized_pnl
from om_plugins.exchange import ExchangeAdapter
from om_plugins.types import Category

__all__ = ["router"]

log = logging.getLogger("api.positions")

router = api_v1_router("positions")

CURSOR_KIND = "s"
#: How long a listing waits for the exchange's price of a position with no stored mark.
PRICE_TIMEOUT_SECONDS = 1.0


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


async def _exchange_price(exchange: ExchangeAdapter, category: str, symbol: str) -> Decimal | None:
    try:
        return await asyncio.wait_for(
            exchange.get_reference_price(Category(category), symbol), PRICE_TIMEOUT_SECONDS
        )
    except Exception as exc:
        # A listing without one PnL beats no listing: the field is null.
        log.info("no price for %s %s: %s", category, symbol, exc)
        return None


def _pnl(row: Position, mark: Decimal | None) -> Decimal | None:
    if mark is None:
        return None
    state = PositionState(row.size, row.avg_entry_price, row.realized_pnl, row.fees_paid)
    return unrealized_pnl(state, mark, inverse=row.category == Category.INVERSE.value)


@router.get(
    "/positions",
    summary="Positions, with unrealized PnL",
    description="Open (non-flat) positions unless `include_closed=true`. The mark price is "
    "the stored one, else the exchange's current price (fetched with a short timeout); "
    "`unrealized_pnl` is `null` when neither is available.",
    responses=error_responses(422),
)
async def list_positions(
    _key: ReadKey,
    session: SessionDep,
    service: ServiceDep,
    include_closed: Annotated[bool, Query(description="Include flat positions.")] = False,
) -> PositionList:
    rows = (
        await session.exec(
            select(Position).order_by(
                col(Position.symbol), col(Position.category), col(Position.position_idx)
            )
        )
    ).all()
    await session.close()
    # Filtered here, not in SQL: SQLite keeps decimals as text, where "0.0" != "0".
    rows = [r for r in rows if include_closed or r.size != 0]
    missing = [r for r in rows if r.mark_price is None and r.size != 0]
    fetched = await asyncio.gather(
        *(_exchange_price(service.exchange, r.category, r.symbol) for r in missing)
    )
    prices = {r.id: price for r, price in zip(missing, fetched, strict=True)}
    items = []
    for row in rows:
        mark = row.mark_price if row.mark_price is not None else prices.get(row.id)
        items.append(
            PositionOut(
                symbol=row.symbol,
                category=row.category,
                position_idx=row.position_idx,
                size=format(row.size, "f"),
                avg_entry_price=format(row.avg_entry_price, "f"),
                realized_pnl=format(row.realized_pnl, "f"),
                fees_paid=format(row.fees_paid, "f"),
                fees=dict(row.fees or {}),
                mark_price=_dec(mark),
                unrealized_pnl=_dec(_pnl(row, mark)),
                updated_at=row.updated_at,
            )
        )
    return PositionList(items=items)


@router.get(
    "/positions/{symbol}/snapshots",
    summary="A position's snapshots, newest first",
    description="Taken on every fill, periodically and on reconciliation. Keyset-paginated "
    "like `/orders`.",
    responses=error_responses(400, 422),
)
async def list_snapshots(
    _key: ReadKey,
    session: SessionDep,
    symbol: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["BTCUSDT"])],
    category: Category = Category.LINEAR,
    from_: Annotated[
        UTCTimestamp | None,
        Query(alias="from", description="Taken at or after (ISO 8601 with timezone)."),
    ] = None,
    to: Annotated[
        UTCTimestamp | None, Query(description="Taken before (ISO 8601 with timezone).")
    ] = None,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
) -> SnapshotPage:
    position = decode_cursor(CURSOR_KIND, cursor) if cursor else None  # `cursor=`: none
    where, order_by = keyset(col(PositionSnapshot.created_at), col(PositionSnapshot.id), position)
    where.append(col(PositionSnapshot.symbol) == symbol.upper())
    where.append(col(PositionSnapshot.category) == category.value)
    if from_ is not None:
        where.append(col(PositionSnapshot.created_at) >= from_)
    if to is not None:
        where.append(col(PositionSnapshot.created_at) < to)
    query = select(PositionSnapshot).where(*where).order_by(*order_by).limit(limit + 1)
    rows = (await session.exec(query)).all()
    page, cursor_out = next_cursor(CURSOR_KIND, rows, limit)
    return SnapshotPage(
        items=[
            SnapshotOut(
                id=s.id or 0,
                symbol=s.symbol,
                category=s.category,
                position_idx=s.position_idx,
                size=format(s.size, "f"),
                avg_entry_price=format(s.avg_entry_price, "f"),
                realized_pnl=format(s.realized_pnl, "f"),
                fees_paid=format(s.fees_paid, "f"),
                mark_price=_dec(s.mark_price),
                unrealized_pnl=_dec(s.unrealized_pnl),
                reason=s.reason,
                created_at=s.created_at,
            )
            for s in page
        ],
        next_cursor=cursor_out,
    )
