"""Builders of the SDK's data types with defaults that pass every built-in rule, so the setup
of a hook's unit test is one line::

    ctx = make_context(position="0.5", balance="2000")
    assert MyRisk().om_check_signal(make_signal(qty="1"), ctx) is None

Numbers may be given as ``Decimal``, ``int`` or ``str`` — never ``float`` (a ``TypeError``
says so) — and enums as their values (``side="sell"``). Defaults mirror the paper exchange:
BTCUSDT at 60 000, ETHUSDT at 3 000, SOLUSDT at 150, with Bybit's rules for them, fee rates
0.02 % maker / 0.055 % taker, leverage 10, and a trading day without realized PnL.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from om_plugins.types import (
    Balance,
    Category,
    DecisionContext,
    FeeRates,
    Instrument,
    OpenOrder,
    OrderType,
    PnL,
    Position,
    ProposedOrder,
    Side,
    Signal,
    TimeInForce,
    TradingDay,
    TradingState,
)

__all__ = [
    "NOW",
    "Number",
    "make_balance",
    "make_context",
    "make_fee_rates",
    "make_instrument",
    "make_open_order",
    "make_order",
    "make_position",
    "make_signal",
    "make_trading_day",
    "signal_payload",
]

Number = Decimal | int | str

#: The default ``context.now``: Monday 2025-01-06 12:00 UTC, so unit tests do not depend on
#: the wall clock.
NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)

_RULES: dict[str, dict[str, str]] = {
    "BTCUSDT": {
        "tick_size": "0.10",
        "qty_step": "0.001",
        "min_qty": "0.001",
        "max_qty": "1190.000",
        "max_market_qty": "500.000",
        "min_notional": "5",
        "base_coin": "BTC",
    },
    "ETHUSDT": {
        "tick_size": "0.01",
        "qty_step": "0.01",
        "min_qty": "0.01",
        "max_qty": "7240.00",
        "max_market_qty": "3620.00",
        "min_notional": "5",
        "base_coin": "ETH",
    },
    "SOLUSDT": {
        "tick_size": "0.010",
        "qty_step": "0.1",
        "min_qty": "0.1",
        "max_qty": "79770.0",
        "max_market_qty": "24500.0",
        "min_notional": "5",
        "base_coin": "SOL",
    },
}
_GENERIC = {
    "tick_size": "0.01",
    "qty_step": "0.001",
    "min_qty": "0.001",
    "max_qty": "100000",
    "min_notional": "5",
}
_PRICES = {"BTCUSDT": "60000", "ETHUSDT": "3000", "SOLUSDT": "150"}
_GENERIC_PRICE = "100"

_ids = itertools.count(1)


def _dec(value: Number) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"pass money and quantities as Decimal or str, never float ({value!r})")
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"expected Decimal, int or str, got {type(value).__name__}")
    return value if isinstance(value, Decimal) else Decimal(value)


def _opt(value: Number | None) -> Decimal | None:
    return None if value is None else _dec(value)


def default_price(symbol: str) -> Decimal:
    """The paper exchange's starting price of ``symbol`` (100 for unknown symbols)."""
    return Decimal(_PRICES.get(symbol.upper(), _GENERIC_PRICE))


def make_instrument(symbol: str = "BTCUSDT", **overrides: Any) -> Instrument:
    """Trading rules of ``symbol``: Bybit's for BTC/ETH/SOL-USDT, generic ones otherwise
    (tick 0.01, step 0.001, min notional 5); override any field."""
    symbol = symbol.upper()
    rules: dict[str, Any] = dict(_RULES.get(symbol, _GENERIC))
    rules.setdefault("base_coin", symbol.removesuffix("USDT"))
    rules.update(overrides)
    values: dict[str, Any] = {
        "symbol": symbol,
        "category": Category(rules.pop("category", "linear")),
    }
    for key, value in rules.items():
        if key in ("base_coin", "quote_coin"):
            values[key] = value
        else:
            values[key] = _opt(value)
    return Instrument(**values)


def make_position(
    symbol: str = "BTCUSDT",
    size: Number = "0",
    *,
    avg_entry_price: Number | None = None,
    realized_pnl: Number = "0",
    fees_paid: Number = "0",
    category: Category | str = Category.LINEAR,
    position_idx: int = 0,
) -> Position:
    """A position; ``size`` is signed (> 0 long). The entry price defaults to the symbol's
    default price for a non-flat position."""
    signed = _dec(size)
    if avg_entry_price is None:
        entry = default_price(symbol) if signed else Decimal(0)
    else:
        entry = _dec(avg_entry_price)
    return Position(
        category=Category(category),
        symbol=symbol.upper(),
        size=signed,
        avg_entry_price=entry,
        realized_pnl=_dec(realized_pnl),
        fees_paid=_dec(fees_paid),
        position_idx=position_idx,
    )


def make_balance(
    available: Number = "100000", equity: Number | None = None, coin: str = "USDT"
) -> Balance:
    """A balance; ``equity`` defaults to ``available``."""
    amount = _dec(available)
    return Balance(coin=coin, available=amount, equity=amount if equity is None else _dec(equity))


def make_open_order(
    symbol: str = "BTCUSDT",
    side: Side | str = Side.BUY,
    qty: Number = "0.001",
    *,
    price: Number | None = "50000",
    filled_qty: Number = "0",
    status: str = "new",
    reduce_only: bool = False,
    client_order_id: str | None = None,
    category: Category | str = Category.LINEAR,
) -> OpenOrder:
    return OpenOrder(
        client_order_id=client_order_id or f"open-{next(_ids)}",
        symbol=symbol.upper(),
        category=Category(category),
        side=Side(side),
        qty=_dec(qty),
        filled_qty=_dec(filled_qty),
        price=_opt(price),
        status=status,
        reduce_only=reduce_only,
    )


_SIGNAL_DECIMALS = ("strength", "price", "qty", "notional", "take_profit", "stop_loss")


def make_signal(symbol: str = "BTCUSDT", side: Side | str = Side.BUY, **fields: Any) -> Signal:
    """A validated-looking signal. ``signal_id`` defaults to a new ``test-signal-<n>`` (unique
    in the process, so harness runs never collide); ``created_at`` defaults to ``None``
    (no age checks)."""
    values: dict[str, Any] = dict(fields)
    values.setdefault("signal_id", f"test-signal-{next(_ids)}")
    for key in _SIGNAL_DECIMALS:
        if values.get(key) is not None:
            values[key] = _dec(values[key])
    if values.get("category") is not None:
        values["category"] = Category(values["category"])
    if values.get("order_type") is not None:
        values["order_type"] = OrderType(values["order_type"])
    if values.get("time_in_force") is not None:
        values["time_in_force"] = TimeInForce(values["time_in_force"])
    if "metadata" in values:
        values["metadata"] = dict(values["metadata"] or {})
    return Signal(symbol=symbol.upper(), side=Side(side), **values)


def make_fee_rates(maker: Number = "0.0002", taker: Number = "0.00055") -> FeeRates:
    """Fee rates as fractions of the order value (default: the paper exchange's)."""
    return FeeRates(maker=_dec(maker), taker=_dec(taker))


def make_trading_day(
    realized_pnl: Number = "0",
    fees_paid: Number = "0",
    *,
    by_symbol: Mapping[str, tuple[Number, Number]] | None = None,
    now: datetime = NOW,
    day_start: time | str = "00:00",
) -> TradingDay:
    """The trading day ``now`` falls in (starting at ``day_start``, UTC) with its realized
    PnL and fees: totals, and ``by_symbol={"BTCUSDT": (pnl, fees)}`` (the totals default to
    their sum when only ``by_symbol`` is given)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    opens = time.fromisoformat(day_start) if isinstance(day_start, str) else day_start
    moment = now.astimezone(UTC)
    start = datetime.combine(moment.date(), opens.replace(tzinfo=None), tzinfo=UTC)
    if start > moment:
        start -= timedelta(days=1)
    symbols = {
        sym.upper(): PnL(_dec(pnl), _dec(fees)) for sym, (pnl, fees) in (by_symbol or {}).items()
    }
    total = PnL(_dec(realized_pnl), _dec(fees_paid))
    if symbols and not total.realized_pnl and not total.fees_paid:
        total = PnL(
            sum((p.realized_pnl for p in symbols.values()), Decimal(0)),
            sum((p.fees_paid for p in symbols.values()), Decimal(0)),
        )
    return TradingDay(start=start, end=start + timedelta(days=1), total=total, by_symbol=symbols)


def make_context(
    symbol: str = "BTCUSDT",
    *,
    instrument: Instrument | None = None,
    reference_price: Number | None = None,
    position: Position | Number | None = None,
    positions: Iterable[Position] | None = None,
    open_orders: Iterable[OpenOrder] = (),
    balance: Balance | Number | None = None,
    trading_state: TradingState | str = TradingState.ACTIVE,
    now: datetime = NOW,
    recent_order_count: int = 0,
    prices: Mapping[str, Number] | None = None,
    fees: FeeRates | None = None,
    leverage: Number | None = "10",
    today: TradingDay | None = None,
) -> DecisionContext:
    """The snapshot decision hooks see, for ``symbol``.

    :param position: the symbol's position, or just its signed size (flat by default).
    :param positions: every non-flat position; defaults to ``position`` when it is not flat.
    :param balance: a :class:`Balance` or the available amount (default 100 000 USDT).
    :param prices: reference prices by symbol; the symbol's own is always
        ``reference_price``.
    :param fees: fee rates (default :func:`make_fee_rates`); ``leverage`` may be ``None``.
    :param today: the trading day (default: ``now``'s, without realized PnL) — see
        :func:`make_trading_day`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    rules = instrument or make_instrument(symbol)
    price = default_price(rules.symbol) if reference_price is None else _dec(reference_price)
    if isinstance(position, Position):
        own = position
    else:
        own = make_position(rules.symbol, position if position is not None else "0")
    every = tuple(positions) if positions is not None else ((own,) if own.size else ())
    known = {key: _dec(value) for key, value in (prices or {}).items()}
    known[rules.symbol] = price
    if isinstance(balance, Balance):
        funds = balance
    else:
        funds = make_balance(balance if balance is not None else "100000")
    return DecisionContext(
        now=now,
        instrument=rules,
        reference_price=price,
        position=own,
        positions=every,
        open_orders=tuple(open_orders),
        balance=funds,
        trading_state=TradingState(trading_state),
        recent_order_count=recent_order_count,
        prices=known,
        fees=fees if fees is not None else make_fee_rates(),
        leverage=_opt(leverage),
        today=today if today is not None else make_trading_day(now=now),
    )


def make_order(
    signal: Signal | None = None,
    *,
    symbol: str | None = None,
    side: Side | str | None = None,
    order_type: OrderType | str | None = None,
    qty: Number = "0.010",
    price: Number | None = None,
    reference_price: Number | None = None,
    time_in_force: TimeInForce | str | None = None,
    reduce_only: bool | None = None,
    leg: int = 0,
) -> ProposedOrder:
    """A shaped order, as ``om_check_order`` receives it. Symbol, side and reduce-only come
    from ``signal`` when given; ``order_type`` defaults to limit when ``price`` is given,
    else market."""
    sym = (symbol or (signal.symbol if signal else "BTCUSDT")).upper()
    kind = OrderType(order_type) if order_type is not None else None
    if kind is None:
        kind = OrderType.LIMIT if price is not None else OrderType.MARKET
    return ProposedOrder(
        signal_id=signal.signal_id if signal else f"test-signal-{next(_ids)}",
        leg=leg,
        symbol=sym,
        category=signal.category if signal else Category.LINEAR,
        side=Side(side) if side is not None else (signal.side if signal else Side.BUY),
        order_type=kind,
        qty=_dec(qty),
        price=_opt(price),
        reference_price=default_price(sym) if reference_price is None else _dec(reference_price),
        time_in_force=TimeInForce(time_in_force) if time_in_force is not None else None,
        reduce_only=reduce_only if reduce_only is not None else bool(signal and signal.reduce_only),
        take_profit=signal.take_profit if signal else None,
        stop_loss=signal.stop_loss if signal else None,
    )


def signal_payload(signal: Signal) -> dict[str, Any]:
    """``signal`` as the JSON object a producer would publish (decimals as strings)."""
    payload: dict[str, Any] = {
        "signal_id": signal.signal_id,
        "symbol": signal.symbol,
        "side": signal.side.value,
        "category": signal.category.value,
        "strength": format(signal.strength, "f"),
        "reduce_only": signal.reduce_only,
    }
    for key in ("price", "qty", "notional", "take_profit", "stop_loss"):
        value = getattr(signal, key)
        if value is not None:
            payload[key] = format(value, "f")
    if signal.order_type is not None:
        payload["order_type"] = signal.order_type.value
    if signal.time_in_force is not None:
        payload["time_in_force"] = signal.time_in_force.value
    for key in ("strategy_id", "model_version"):
        if getattr(signal, key) is not None:
            payload[key] = getattr(signal, key)
    if signal.created_at is not None:
        payload["created_at"] = signal.created_at.isoformat()
    if signal.metadata:
        payload["metadata"] = dict(signal.metadata)
    return payload
