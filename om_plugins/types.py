"""The typed data that flows between the engine and plugins.

Everything here is immutable: a hook receives a snapshot the engine prepared and returns a
decision; it never mutates engine state. Money and quantities are ``Decimal`` throughout and
times are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

__all__ = [
    "Balance",
    "Category",
    "DecisionContext",
    "FeeRates",
    "Instrument",
    "OpenOrder",
    "OrderStatus",
    "OrderType",
    "OrderTypeDecision",
    "PnL",
    "Position",
    "PositionMode",
    "ProposedOrder",
    "QtyUnit",
    "QuantityDecision",
    "Rejection",
    "Side",
    "Signal",
    "TimeInForce",
    "TradingDay",
    "TradingState",
]


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class Category(StrEnum):
    LINEAR = "linear"
    SPOT = "spot"
    INVERSE = "inverse"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    POST_ONLY = "PostOnly"


class QtyUnit(StrEnum):
    """What an order quantity counts."""

    #: The base coin (BTC of BTCUSDT): linear contracts and spot.
    BASE = "base"
    #: Contracts worth :attr:`Instrument.contract_size` of the quote coin each (Bybit's
    #: inverse contracts: one contract is 1 USD).
    CONTRACTS = "contracts"
    #: The quote coin to spend. Only orders placed elsewhere use it (a spot market buy "for
    #: 100 USDT"); their *filled* quantities are still in the base coin.
    QUOTE = "quote"


class PositionMode(StrEnum):
    """How the account holds positions in a derivatives symbol."""

    #: One net position per symbol (``position_idx`` 0).
    ONE_WAY = "one_way"
    #: A long and a short position side by side (``position_idx`` 1 and 2).
    HEDGE = "hedge"


class OrderStatus(StrEnum):
    """The status of an order, in no exchange's vocabulary.

    Exchange plugins report ``NEW`` … ``DEACTIVATED``; the first three are the engine's own
    and never come from an exchange.
    """

    #: Engine only: the intent is committed, the exchange has not answered yet.
    PENDING_SUBMIT = "pending_submit"
    #: Engine only: the create call had an ambiguous outcome; resolved by a lookup.
    SUBMIT_UNKNOWN = "submit_unknown"
    #: Engine only: the exchange accepted the request; its stream has not confirmed it yet.
    SUBMITTED = "submitted"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    #: A conditional order waiting for its trigger.
    UNTRIGGERED = "untriggered"
    TRIGGERED = "triggered"
    FILLED = "filled"
    #: Cancelled (the engine turns it into ``PARTIALLY_FILLED_CANCELLED`` when something
    #: filled, whichever of the two an exchange reports).
    CANCELLED = "cancelled"
    PARTIALLY_FILLED_CANCELLED = "partially_filled_cancelled"
    REJECTED = "rejected"
    #: A conditional order cancelled before it triggered.
    DEACTIVATED = "deactivated"


class TradingState(StrEnum):
    ACTIVE = "active"
    #: Only orders that shrink an existing position are allowed.
    REDUCING = "reducing"
    HALTED = "halted"


@dataclass(frozen=True, slots=True)
class Signal:
    """A validated trading signal, as parsed from ``model-service.trading_signals``.

    ``metadata`` carries the signal's ``metadata`` object untouched, plus any unknown
    top-level fields the producer sent.
    """

    signal_id: str
    symbol: str
    side: Side
    category: Category = Category.LINEAR
    strength: Decimal = Decimal(1)
    order_type: OrderType | None = None
    price: Decimal | None = None
    qty: Decimal | None = None
    notional: Decimal | None = None
    reduce_only: bool = False
    time_in_force: TimeInForce | None = None
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    strategy_id: str | None = None
    model_version: str | None = None
    created_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Instrument:
    """Trading rules of one instrument, as the exchange publishes them.

    Quantities (``qty_step``, ``min_qty``, ``max_qty``, order and position sizes) count
    :attr:`qty_unit`: the base coin on linear and spot instruments, contracts on inverse
    ones. Use :meth:`notional` and :meth:`qty_for_notional` rather than ``qty × price``, and
    the same code sizes every category right.
    """

    symbol: str
    category: Category
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    #: The smallest order value, in the quote coin.
    min_notional: Decimal = Decimal(0)
    #: Market orders may have a lower cap than limit orders (Bybit's ``maxMktOrderQty``).
    max_market_qty: Decimal | None = None
    base_coin: str = ""
    quote_coin: str = "USDT"
    #: What a quantity counts: ``BASE`` coin, or ``CONTRACTS`` (inverse).
    qty_unit: QtyUnit = QtyUnit.BASE
    #: Value of one quantity unit: 1 base coin for ``BASE``; for ``CONTRACTS`` the quote-coin
    #: value of one contract (1 USD on Bybit's inverse contracts).
    contract_size: Decimal = Decimal(1)
    #: The coin margin, PnL and fees settle in (USDT for linear, BTC for inverse BTCUSD, the
    #: quote coin for spot). Empty means the quote coin.
    settle_coin: str = ""

    @property
    def pnl_coin(self) -> str:
        """The coin realized PnL and fee totals are counted in (:attr:`settle_coin`)."""
        return self.settle_coin or self.quote_coin

    def notional(self, qty: Decimal, price: Decimal) -> Decimal:
        """The quote-coin value of ``qty`` units at ``price``."""
        if self.qty_unit is QtyUnit.CONTRACTS:
            return qty * self.contract_size
        return qty * price

    def qty_for_notional(self, notional: Decimal, price: Decimal) -> Decimal:
        """The (unrounded) quantity worth ``notional`` of the quote coin at ``price``."""
        if self.qty_unit is QtyUnit.CONTRACTS:
            return notional / self.contract_size
        return notional / price

    def qty_for_base(self, base_qty: Decimal, price: Decimal) -> Decimal:
        """The (unrounded) quantity that holds ``base_qty`` of the base coin at ``price``."""
        if self.qty_unit is QtyUnit.CONTRACTS:
            return base_qty * price / self.contract_size
        return base_qty


@dataclass(frozen=True, slots=True)
class Position:
    """A position as the engine knows it. ``size`` is signed: > 0 long, < 0 short."""

    category: Category
    symbol: str
    size: Decimal = Decimal(0)
    avg_entry_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)
    #: 0 in one-way mode; 1 (long side) or 2 (short side) in hedge mode.
    position_idx: int = 0
    #: What ``size`` counts, and the value of one unit (see :class:`Instrument`).
    qty_unit: QtyUnit = QtyUnit.BASE
    contract_size: Decimal = Decimal(1)

    def notional(self, price: Decimal) -> Decimal:
        """The quote-coin value of the position at ``price``."""
        if self.qty_unit is QtyUnit.CONTRACTS:
            return abs(self.size) * self.contract_size
        return abs(self.size) * price


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order that is not terminal yet (resting, partially filled or in doubt)."""

    client_order_id: str
    symbol: str
    category: Category
    side: Side
    qty: Decimal
    filled_qty: Decimal
    price: Decimal | None
    status: str
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class Balance:
    coin: str
    available: Decimal
    equity: Decimal


@dataclass(frozen=True, slots=True)
class FeeRates:
    """The account's fee rates for one instrument, as fractions of the order value
    (``0.00055`` = 0.055 %); a negative rate is a rebate."""

    maker: Decimal
    taker: Decimal


@dataclass(frozen=True, slots=True)
class PnL:
    """Realized PnL (before fees) and fees paid over some period, in the settle coin."""

    realized_pnl: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)

    @property
    def net(self) -> Decimal:
        """Realized PnL net of fees: negative when losing."""
        return self.realized_pnl - self.fees_paid


_ALL_TIME = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class TradingDay:
    """Realized PnL and fees of the current trading day.

    The day starts at the configured UTC time of day (``OM_TRADING_DAY_START``, midnight by
    default) and ends 24 hours later. ``total`` sums every position (flat or not, every
    symbol); ``by_symbol`` holds each symbol that realized PnL or paid fees today. Amounts
    are in each position's settle coin: with several settle coins, read ``by_symbol``.
    """

    start: datetime = _ALL_TIME[0]
    end: datetime = _ALL_TIME[1]
    total: PnL = PnL()
    by_symbol: Mapping[str, PnL] = field(default_factory=dict)

    def symbol(self, symbol: str) -> PnL:
        """Today's realized PnL and fees of ``symbol`` (zero when it did not trade)."""
        return self.by_symbol.get(symbol, PnL())


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """The snapshot every decision hook sees, prepared by the engine before the hooks run.

    Hooks must be pure functions of ``(signal, context, their own settings)``: the engine may
    call them again with the same arguments (for previews, replays or retries).
    """

    now: datetime
    instrument: Instrument
    #: The signal's price when it has one, else the exchange's last/mark price.
    reference_price: Decimal
    #: The net position for the signal's (category, symbol).
    position: Position
    #: Every non-flat position, for exposure limits across symbols.
    positions: tuple[Position, ...]
    #: Non-terminal orders for the signal's symbol.
    open_orders: tuple[OpenOrder, ...]
    balance: Balance
    trading_state: TradingState
    #: Orders created for this symbol in the last 60 seconds.
    recent_order_count: int = 0
    #: Reference prices of symbols with positions, for valuing exposure.
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    #: How the account holds this symbol's positions. In hedge mode ``position`` is the net
    #: of both sides and ``positions`` holds each side; the engine picks the order's side
    #: (``ProposedOrder.position_idx``).
    position_mode: PositionMode = PositionMode.ONE_WAY
    #: The account's maker/taker fee rates for the instrument; ``None`` when the exchange
    #: adapter does not report them. (Plugin API 2.0)
    fees: FeeRates | None = None
    #: The leverage set on the exchange for the symbol; ``None`` when the adapter does not
    #: report it (or the category has none, e.g. spot). (Plugin API 2.0)
    leverage: Decimal | None = None
    #: Realized PnL and fees of the current trading day, from the engine's records. The
    #: engine always fills it; the default (zero, unbounded) only appears in a context built
    #: by hand. (Plugin API 2.0)
    today: TradingDay = field(default_factory=TradingDay)

    def gross_exposure(self) -> Decimal:
        """Sum of |size| × price over all positions, valued at the known prices."""
        total = Decimal(0)
        for pos in self.positions:
            price = self.prices.get(pos.symbol) or pos.avg_entry_price
            total += pos.notional(price)
        return total


@dataclass(frozen=True, slots=True)
class Rejection:
    """A reason not to trade.

    ``code`` is stable and machine-readable (``MAX_ORDER_NOTIONAL``); ``message`` is for
    humans; ``details`` carries the numbers that triggered it, as strings.
    The engine fills ``plugin`` with the name of the plugin that said no.
    """

    code: str
    message: str
    details: Mapping[str, str] = field(default_factory=dict)
    plugin: str = ""


@dataclass(frozen=True, slots=True)
class OrderTypeDecision:
    order_type: OrderType
    #: Limit price (already rounded to the tick size); ``None`` for market orders.
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None


@dataclass(frozen=True, slots=True)
class QuantityDecision:
    """The order quantity in the instrument's :attr:`~Instrument.qty_unit` (base coin, or
    contracts on inverse instruments), already rounded to the instrument's step."""

    qty: Decimal


@dataclass(frozen=True, slots=True)
class ProposedOrder:
    """The order the pipeline would send, before the order-level risk checks."""

    signal_id: str
    leg: int
    symbol: str
    category: Category
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal | None
    reference_price: Decimal
    time_in_force: TimeInForce | None = None
    reduce_only: bool = False
    #: Set by the engine: 0 in one-way mode, 1/2 for the long/short side in hedge mode.
    position_idx: int = 0
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    #: What ``qty`` counts, and the value of one unit (see :class:`Instrument`).
    qty_unit: QtyUnit = QtyUnit.BASE
    contract_size: Decimal = Decimal(1)

    @property
    def notional(self) -> Decimal:
        """The order's value in the quote coin, at its limit price or the reference price."""
        if self.qty_unit is QtyUnit.CONTRACTS:
            return self.qty * self.contract_size
        return self.qty * (self.price if self.price is not None else self.reference_price)
