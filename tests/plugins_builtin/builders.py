"""Small builders of the SDK's decision inputs, with defaults that pass every rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from om_plugins import (
    Balance,
    Category,
    DecisionContext,
    Instrument,
    OpenOrder,
    OrderType,
    Position,
    ProposedOrder,
    Side,
    Signal,
    TradingState,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

BTC = Instrument(
    symbol="BTCUSDT",
    category=Category.LINEAR,
    tick_size=Decimal("0.10"),
    qty_step=Decimal("0.001"),
    min_qty=Decimal("0.001"),
    max_qty=Decimal("1190.000"),
    min_notional=Decimal("5"),
    max_market_qty=Decimal("500.000"),
    base_coin="BTC",
)


def signal(**overrides: Any) -> Signal:
    values: dict[str, Any] = {
        "signal_id": "sig-1",
        "symbol": "BTCUSDT",
        "side": Side.BUY,
        "created_at": NOW,
    }
    values.update(overrides)
    return Signal(**values)


def open_order(n: int, symbol: str = "BTCUSDT") -> OpenOrder:
    return OpenOrder(
        client_order_id=f"open-{n}",
        symbol=symbol,
        category=Category.LINEAR,
        side=Side.BUY,
        qty=Decimal("0.001"),
        filled_qty=Decimal(0),
        price=Decimal("50000"),
        status="New",
    )


def context(
    *,
    instrument: Instrument = BTC,
    reference_price: Decimal | str = "60000",
    position_size: Decimal | str = "0",
    avg_entry_price: Decimal | str = "60000",
    other_positions: Sequence[Position] = (),
    prices: Mapping[str, Decimal] | None = None,
    open_orders: int = 0,
    available: Decimal | str = "100000",
    trading_state: TradingState = TradingState.ACTIVE,
    recent_order_count: int = 0,
    now: datetime = NOW,
) -> DecisionContext:
    """A DecisionContext for ``instrument``; ``position_size`` is the signal symbol's position."""
    position = Position(
        category=instrument.category,
        symbol=instrument.symbol,
        size=Decimal(position_size),
        avg_entry_price=Decimal(avg_entry_price),
    )
    positions = tuple(p for p in (position, *other_positions) if p.size != 0)
    return DecisionContext(
        now=now,
        instrument=instrument,
        reference_price=Decimal(reference_price),
        position=position,
        positions=positions,
        open_orders=tuple(open_order(i, instrument.symbol) for i in range(open_orders)),
        balance=Balance(coin="USDT", available=Decimal(available), equity=Decimal(available)),
        trading_state=trading_state,
        recent_order_count=recent_order_count,
        prices=dict(prices)
        if prices is not None
        else {instrument.symbol: Decimal(reference_price)},
    )


def proposed(
    *,
    side: Side = Side.BUY,
    qty: Decimal | str = "0.010",
    price: Decimal | str | None = "60000",
    reference_price: Decimal | str = "60000",
    symbol: str = "BTCUSDT",
) -> ProposedOrder:
    return ProposedOrder(
        signal_id="sig-1",
        leg=0,
        symbol=symbol,
        category=Category.LINEAR,
        side=side,
        order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
        qty=Decimal(qty),
        price=Decimal(price) if price is not None else None,
        reference_price=Decimal(reference_price),
    )
