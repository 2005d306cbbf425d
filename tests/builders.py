"""Small builders for the SDK's data types, shared by tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from om_plugins.types import (
    Balance,
    Category,
    DecisionContext,
    Instrument,
    Position,
    Side,
    Signal,
    TradingState,
)

BTC = Instrument(
    symbol="BTCUSDT",
    category=Category.LINEAR,
    tick_size=Decimal("0.10"),
    qty_step=Decimal("0.001"),
    min_qty=Decimal("0.001"),
    max_qty=Decimal("1190"),
    min_notional=Decimal("5"),
    base_coin="BTC",
    quote_coin="USDT",
)


def signal(**overrides: Any) -> Signal:
    values: dict[str, Any] = {"signal_id": "sig-1", "symbol": "BTCUSDT", "side": Side.BUY}
    values.update(overrides)
    return Signal(**values)


def context(**overrides: Any) -> DecisionContext:
    values: dict[str, Any] = {
        "now": datetime(2026, 1, 1, tzinfo=UTC),
        "instrument": BTC,
        "reference_price": Decimal("60000"),
        "position": Position(category=Category.LINEAR, symbol="BTCUSDT"),
        "positions": (),
        "open_orders": (),
        "balance": Balance(coin="USDT", available=Decimal("10000"), equity=Decimal("10000")),
        "trading_state": TradingState.ACTIVE,
    }
    values.update(overrides)
    return DecisionContext(**values)
