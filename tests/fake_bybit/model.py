"""The fake exchange's records: orders, executions, positions, and Bybit's error type."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.fake_bybit.instruments import Instrument

#: Default fee rates by category: (taker, maker). Derivatives get Bybit's non-VIP
#: derivatives rate, spot its non-VIP spot rate. A negative maker rate is a rebate
#: (``FakeBybit(fee_rates=...)`` / ``set_fee_rates``).
FEE_RATES: dict[str, tuple[Decimal, Decimal]] = {
    "linear": (Decimal("0.00055"), Decimal("0.0002")),
    "inverse": (Decimal("0.00055"), Decimal("0.0002")),
    "spot": (Decimal("0.001"), Decimal("0.001")),
}

OPEN_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered"})
ZERO = Decimal(0)


class BybitError(Exception):
    """A request Bybit answers with a non-zero ``retCode`` (HTTP 200)."""

    def __init__(self, ret_code: int, ret_msg: str) -> None:
        super().__init__(f"{ret_msg} (ErrCode: {ret_code})")
        self.ret_code = ret_code
        self.ret_msg = ret_msg


@dataclass(eq=False)
class FakeOrder:
    """One order as the exchange holds it; ``request`` is the create body as received."""

    index: int
    order_id: str
    order_link_id: str
    instrument: Instrument
    side: str
    order_type: str
    qty: Decimal
    #: Limit price; for a derivatives market order the protection price; ``None`` for spot
    #: market orders.
    price: Decimal | None
    time_in_force: str
    reduce_only: bool
    close_on_trigger: bool
    position_idx: int
    market_unit: str
    take_profit: Decimal | None
    stop_loss: Decimal | None
    last_price_on_created: Decimal
    created_ms: int
    request: dict[str, Any] = field(repr=False)
    status: str = "New"
    cum_exec_qty: Decimal = ZERO
    cum_exec_value: Decimal = ZERO
    cum_exec_fee: Decimal = ZERO
    closed_pnl: Decimal = ZERO
    #: The coin of the first fee (Bybit's deprecated ``feeCurrency``/``cumExecFee`` name it).
    fee_coin: str = ""
    #: Fees per coin (``cumFeeDetail``): a spot order paying taker fees in the base coin and
    #: getting maker rebates in the quote coin has two.
    fees: dict[str, Decimal] = field(default_factory=dict)
    reject_reason: str = "EC_NoError"
    cancel_type: str = "UNKNOWN"
    updated_ms: int = 0
    #: False once a test called ``forget_from_realtime``: only ``/v5/order/history`` shows it.
    in_realtime: bool = True

    @property
    def category(self) -> str:
        return self.instrument.category

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def quote_qty(self) -> bool:
        """Spot market buy whose ``qty`` is an amount of the quote coin."""
        return self.market_unit == "quoteCoin"

    @property
    def leaves_qty(self) -> Decimal:
        if not self.is_open or self.quote_qty:
            return ZERO
        return self.qty - self.cum_exec_qty

    @property
    def avg_price(self) -> Decimal | None:
        if self.cum_exec_qty == 0:
            return None
        return self.cum_exec_value / self.cum_exec_qty


@dataclass(frozen=True, slots=True)
class Execution:
    """One trade (fill) of one order."""

    seq: int
    exec_id: str
    order_id: str
    order_link_id: str
    instrument: Instrument
    side: str
    order_type: str
    order_qty: Decimal
    order_price: Decimal | None
    market_unit: str
    exec_qty: Decimal
    exec_price: Decimal
    exec_value: Decimal
    exec_fee: Decimal
    fee_rate: Decimal
    fee_coin: str
    is_maker: bool
    leaves_qty: Decimal
    closed_size: Decimal
    exec_pnl: Decimal
    mark_price: Decimal
    exec_time_ms: int

    @property
    def category(self) -> str:
        return self.instrument.category

    @property
    def symbol(self) -> str:
        return self.instrument.symbol


@dataclass(eq=False)
class Position:
    """A derivatives position: one-way (``positionIdx`` 0, ``size`` negative when short) or
    one side of a hedge-mode pair (1 long, 2 short)."""

    instrument: Instrument
    created_ms: int
    updated_ms: int
    position_idx: int = 0
    seq: int = 0
    size: Decimal = ZERO
    avg_price: Decimal = ZERO
    leverage: Decimal = Decimal(10)
    cur_realised_pnl: Decimal = ZERO
    cum_realised_pnl: Decimal = ZERO

    @property
    def side(self) -> str:
        if self.size > 0:
            return "Buy"
        if self.size < 0:
            return "Sell"
        return ""

    @property
    def value(self) -> Decimal:
        """In the settle coin: quote coin for linear, base coin for inverse."""
        if self.avg_price == 0:
            return ZERO
        return self.instrument.value(abs(self.size), self.avg_price)

    def unrealised_pnl(self, mark: Decimal) -> Decimal:
        if self.size == 0:
            return ZERO
        if self.instrument.inverse:
            return self.size * (1 / self.avg_price - 1 / mark)
        return (mark - self.avg_price) * self.size

    @property
    def initial_margin(self) -> Decimal:
        return self.value / self.leverage
