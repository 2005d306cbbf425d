"""Prepare the snapshot decision hooks see: exchange data outside the lock, database state
inside it.

Exchange data: the instrument's rules, a reference price, the balance, and — when the
adapter reports them — the account's fee rates and the symbol's leverage (cached, like the
rules). Database data: positions, open orders, recent orders, the trading state, and the
trading day's realized PnL and fees, derived from ``positions`` (cumulative per position)
less the last ``position_snapshots`` row before the day began.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from om_core.db.models import Position as PositionRow
from om_core.db.models import PositionSnapshot, table
from om_core.instruments import Instruments
from om_core.orders.rows import ORDERS
from om_core.orders.status import OPEN
from om_core.trading_state import current_state
from om_plugins.errors import ExchangeRejected
from om_plugins.exchange import ExchangeAdapter
from om_plugins.types import (
    Balance,
    Category,
    DecisionContext,
    FeeRates,
    Instrument,
    OpenOrder,
    PnL,
    Position,
    PositionMode,
    QtyUnit,
    Side,
    Signal,
    TradingDay,
    TradingState,
)

__all__ = [
    "ContextBuilder",
    "DatabaseState",
    "MarketData",
    "open_order",
    "trading_day_bounds",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_POSITIONS = table(PositionRow)
_SNAPSHOTS = table(PositionSnapshot)
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


_LAST_BEFORE = (
    select(func.max(_SNAPSHOTS.c.id).label("id"))
    .where(_SNAPSHOTS.c.created_at < bindparam("start"))
    .group_by(_SNAPSHOTS.c.position_id)
    .subquery()
)
#: Each position's cumulative realized PnL and fees when the trading day began.
_DAY_BASELINES = select(
    _SNAPSHOTS.c.position_id, _SNAPSHOTS.c.realized_pnl, _SNAPSHOTS.c.fees_paid
).join(_LAST_BEFORE, _SNAPSHOTS.c.id == _LAST_BEFORE.c.id)

#: Leverage is changed by hand on the exchange now and then: re-read it this often.
_LEVERAGE_TTL = 60.0


def trading_day_bounds(now: datetime, start: time_of_day) -> tuple[datetime, datetime]:
    """The trading day ``now`` falls in: from the last ``start`` (UTC time of day) at or
    before ``now``, for 24 hours."""
    moment = now.astimezone(UTC)
    begin = datetime.combine(moment.date(), start.replace(tzinfo=None), tzinfo=UTC)
    if begin > moment:
        begin -= timedelta(days=1)
    return begin, begin + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class MarketData:
    instrument: Instrument
    reference_price: Decimal
    balance: Balance
    position_mode: PositionMode = PositionMode.ONE_WAY
    fees: FeeRates | None = None
    leverage: Decimal | None = None


@dataclass(slots=True)
class _Cached:
    """Answers of one optional adapter method, by (category, symbol)."""

    ttl: float
    values: dict[tuple[Category, str], tuple[float, Any]] = field(default_factory=dict)
    #: The adapter raised NotImplementedError: it never will answer.
    unsupported: bool = False


class ContextBuilder:
    def __init__(
        self,
        exchange: ExchangeAdapter,
        instruments: Instruments | None = None,
        *,
        instrument_ttl: float = 300.0,
        day_start: time_of_day = time_of_day(0, 0),
    ) -> None:
        self._exchange = exchange
        self.instruments = instruments or Instruments(exchange, ttl=instrument_ttl)
        self._day_start = day_start
        self._fees = _Cached(instrument_ttl)
        self._leverage = _Cached(min(instrument_ttl, _LEVERAGE_TTL))
        #: Per-position baselines of the current trading day (history: never changes).
        self._baselines: tuple[datetime, dict[int, tuple[Decimal, Decimal]]] | None = None

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
        fees = await self._optional(self._fees, "fee rates", signal, self._exchange.get_fee_rates)
        leverage = await self._optional(
            self._leverage, "leverage", signal, self._exchange.get_leverage
        )
        return MarketData(instrument, price, balance, mode, fees, leverage)

    async def _optional(
        self,
        cache: _Cached,
        what: str,
        signal: Signal,
        read: Callable[[Category, str], Awaitable[T | None]],
    ) -> T | None:
        """An optional adapter read, cached: ``None`` when the adapter does not provide it.

        Only a transient failure propagates (the signal is then retried, like any other
        exchange read); a refusal gives ``None`` for a while, with a warning.
        """
        if cache.unsupported:
            return None
        key = (signal.category, signal.symbol)
        cached = cache.values.get(key)
        if cached is not None and time.monotonic() - cached[0] < cache.ttl:
            value: T | None = cached[1]
            return value
        try:
            value = await read(signal.category, signal.symbol)
        except NotImplementedError:
            cache.unsupported = True
            return None
        except ExchangeRejected as exc:
            log.warning("the exchange refused the %s of %s: %s", what, signal.symbol, exc)
            value = None
        cache.values[key] = (time.monotonic(), value)
        return value

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
        every = (await conn.execute(_ALL_POSITIONS)).all()
        # Filtered here, not in SQL: SQLite keeps decimals as text, where "0.0" != "0".
        rows = [r for r in every if r.size]
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
            today=await self._trading_day(conn, every, now),
        )

    async def _trading_day(
        self, conn: AsyncConnection, rows: Iterable[Any], now: datetime
    ) -> TradingDay:
        """Realized PnL and fees since the trading day began: each position's cumulative
        figures less those of its last snapshot before the day (none: zero)."""
        start, end = trading_day_bounds(now, self._day_start)
        if self._baselines is None or self._baselines[0] != start:
            result = await conn.execute(_DAY_BASELINES, {"start": start})
            self._baselines = (
                start,
                {r.position_id: (r.realized_pnl, r.fees_paid) for r in result.all()},
            )
        baselines = self._baselines[1]
        by_symbol: dict[str, PnL] = {}
        for row in rows:
            if row.updated_at is not None and row.updated_at < start:
                continue  # untouched since before the day began
            realized, fees = baselines.get(row.id, (Decimal(0), Decimal(0)))
            realized = row.realized_pnl - realized
            fees = row.fees_paid - fees
            if realized or fees:
                before = by_symbol.get(row.symbol, PnL())
                by_symbol[row.symbol] = PnL(before.realized_pnl + realized, before.fees_paid + fees)
        total = PnL(
            sum((p.realized_pnl for p in by_symbol.values()), Decimal(0)),
            sum((p.fees_paid for p in by_symbol.values()), Decimal(0)),
        )
        return TradingDay(start=start, end=end, total=total, by_symbol=by_symbol)


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
    today: TradingDay = field(default_factory=TradingDay)

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
            fees=market.fees,
            leverage=market.leverage,
            today=self.today,
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
