"""Prepare the snapshot decision hooks see: exchange data outside the lock, database state
inside it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from om_core.db.models import Position as PositionRow
from om_core.db.models import table
from om_core.instruments import Instruments
from om_core.orders.rows import ORDERS
from om_core.orders.status import OPEN
from om_core.trading_state import current_state
from om_plugins.exchange import ExchangeAdapter
from om_plugins.types import (
    Balance,
    Category,
    DecisionContext,
    Instrument,
    OpenOrder,
    Position,
    PositionMode,
    QtyUnit,
    Side,
    Signal,
    TradingState,
)

__all__ = [
    "ContextBuilder",
    "DatabaseState",
    "MarketData",
    "open_order",
]

_POSITIONS = table(PositionRow)
_OPEN = sorted(s.value for s in OPEN)
_OPEN_COLUMNS = [
    ORDERS.c[name]
    for name in (
        "client_order_id",
        "symbol",
        "category",
        "side",
        "qty",
        "filled_qty",
        "price",
        "status",
        "reduce_only",
    )
]


# Built once: every batch of decisions runs them (see ContextBuilder.read).
_ALL_POSITIONS = select(_POSITIONS)
_OPEN_ORDERS = (
    select(*_OPEN_COLUMNS)
    .where(
        ORDERS.c.symbol.in_(bindparam("symbols", expanding=True)),
        ORDERS.c.status.in_(_OPEN),
    )
    .order_by(ORDERS.c.id)
)
_RECENT_ORDERS = (
    select(ORDERS.c.symbol, func.count())
    .where(
        ORDERS.c.symbol.in_(bindparam("symbols", expanding=True)),
        ORDERS.c.is_external.is_(False),
        ORDERS.c.created_at >= bindparam("since"),
    )
    .group_by(ORDERS.c.symbol)
)


@dataclass(frozen=True, slots=True)
class MarketData:
    instrument: Instrument
    reference_price: Decimal
    balance: Balance
    position_mode: PositionMode = PositionMode.ONE_WAY


class ContextBuilder:
    def __init__(self, exchange: ExchangeAdapter, instruments: Instruments | None = None) -> None:
        self._exchange = exchange
        self.instruments = instruments or Instruments(exchange)

    async def instrument(self, category: Category, symbol: str) -> Instrument:
        return await self.instruments.get(category, symbol)

    def forget_instrument(self, category: Category, symbol: str) -> None:
        """Drop a cached rule set, e.g. after the exchange refused an order's precision."""
        self.instruments.forget(category, symbol)

    async def market_data(self, signal: Signal) -> MarketData:
        """Exchange reads; done before taking the symbol lock to keep the lock short."""
        instrument = await self.instrument(signal.category, signal.symbol)
        price = signal.price
        if price is None:
            price = await self._exchange.get_reference_price(signal.category, signal.symbol)
        # Margin and balance are in the coin the instrument settles in (BTC for inverse).
        balance = await self._exchange.get_balance(instrument.pnl_coin or "USDT")
        mode = PositionMode.ONE_WAY
        if signal.category is not Category.SPOT:
            mode = await self._exchange.get_position_mode(signal.category, signal.symbol)
        return MarketData(instrument, price, balance, mode)

    async def build(
        self, conn: AsyncConnection, signal: Signal, market: MarketData, now: datetime
    ) -> DecisionContext:
        """Database reads; called while holding the symbol lock, so they are consistent with
        every decision committed before."""
        state = await self.read(conn, [(signal.category, signal.symbol)], now)
        return state.context(signal, market)

    async def read(
        self, conn: AsyncConnection, symbols: Iterable[tuple[Category, str]], now: datetime
    ) -> DatabaseState:
        """What decisions on ``symbols`` need from the database, in four statements however
        many symbols (Core: this runs for every batch of signals)."""
        wanted = set(symbols)
        names = sorted({symbol for _, symbol in wanted})
        # Filtered here, not in SQL: SQLite keeps decimals as text, where "0.0" != "0".
        rows = [r for r in (await conn.execute(_ALL_POSITIONS)).all() if r.size]
        open_rows = (await conn.execute(_OPEN_ORDERS, {"symbols": names})).all()
        open_orders: dict[tuple[Category, str], list[OpenOrder]] = {key: [] for key in wanted}
        for o in open_rows:
            key = (_CATEGORIES[o.category], o.symbol)
            if key in open_orders:
                open_orders[key].append(open_order(o))
        recent = dict.fromkeys(names, 0)
        counted = await conn.execute(
            _RECENT_ORDERS, {"symbols": names, "since": now - timedelta(seconds=60)}
        )
        for symbol, count in counted.all():
            recent[symbol] = int(count)
        return DatabaseState(
            now=now,
            positions=tuple(_position(r) for r in rows),
            prices={r.symbol: r.mark_price for r in rows if r.mark_price is not None},
            open_orders=open_orders,
            recent_order_count=recent,
            trading_state=await current_state(conn),
        )


@dataclass(slots=True)
class DatabaseState:
    """The database's side of the decisions of one transaction.

    Intents decided in the same transaction are added with :meth:`add_intent`: each
    decision sees every earlier one, exactly as a fresh read would show it.
    """

    now: datetime
    positions: tuple[Position, ...]
    prices: dict[str, Decimal]
    open_orders: dict[tuple[Category, str], list[OpenOrder]]
    recent_order_count: dict[str, int]
    trading_state: TradingState

    def context(self, signal: Signal, market: MarketData) -> DecisionContext:
        return DecisionContext(
            now=self.now,
            instrument=market.instrument,
            reference_price=market.reference_price,
            position=net_position(self.positions, signal.category, signal.symbol),
            positions=self.positions,
            open_orders=tuple(self.open_orders.get((signal.category, signal.symbol), ())),
            balance=market.balance,
            trading_state=self.trading_state,
            recent_order_count=self.recent_order_count.get(signal.symbol, 0),
            prices={**self.prices, signal.symbol: market.reference_price},
            position_mode=market.position_mode,
        )

    def add_intent(self, order: OpenOrder) -> None:
        self.open_orders.setdefault((order.category, order.symbol), []).append(order)
        self.recent_order_count[order.symbol] = self.recent_order_count.get(order.symbol, 0) + 1


#: Enum members by value: a batch converts every open order of its symbols, and a dict
#: lookup costs a fraction of an Enum call.
_CATEGORIES = {c.value: c for c in Category}
_SIDES = {s.value: s for s in Side}


def open_order(row: Any) -> OpenOrder:
    """An ``orders`` row (Core row, ORM object or intent) as decisions see it."""
    return OpenOrder(
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        category=_CATEGORIES[row.category],
        side=_SIDES[row.side],
        qty=row.qty,
        filled_qty=row.filled_qty,
        price=row.price,
        status=row.status,
        reduce_only=row.reduce_only,
    )


def net_position(positions: Iterable[Position], category: Category, symbol: str) -> Position:
    """One symbol's net position: its only one in one-way mode; in hedge mode the sum of
    both sides, at the entry price of the larger one."""
    sides = [p for p in positions if p.symbol == symbol and p.category == category]
    if not sides:
        unit = QtyUnit.CONTRACTS if category is Category.INVERSE else QtyUnit.BASE
        return Position(category=category, symbol=symbol, qty_unit=unit)
    if len(sides) == 1:
        return sides[0]
    larger = max(sides, key=lambda p: abs(p.size))
    return Position(
        category=category,
        symbol=symbol,
        size=sum((p.size for p in sides), Decimal(0)),
        avg_entry_price=larger.avg_entry_price,
        realized_pnl=sum((p.realized_pnl for p in sides), Decimal(0)),
        fees_paid=sum((p.fees_paid for p in sides), Decimal(0)),
        qty_unit=larger.qty_unit,
        contract_size=larger.contract_size,
    )


def _position(row: Any) -> Position:
    category = _CATEGORIES[row.category]
    return Position(
        category=category,
        symbol=row.symbol,
        size=row.size,
        avg_entry_price=row.avg_entry_price,
        realized_pnl=row.realized_pnl,
        fees_paid=row.fees_paid,
        position_idx=row.position_idx,
        # Inverse sizes count contracts of 1 USD (the only contract size the engine trades).
        qty_unit=QtyUnit.CONTRACTS if category is Category.INVERSE else QtyUnit.BASE,
    )
