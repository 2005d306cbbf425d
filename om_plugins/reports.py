"""What an exchange tells the engine, in no exchange's dialect.

An exchange plugin turns its own wire format into these reports; the engine reads nothing
else. They come from two places:

* the order stream on ``ws-gateway.order``: the configured adapter's
  :meth:`~om_plugins.exchange.ExchangeAdapter.decode_stream` turns each message into a list
  of reports (an exchange's WS-Gateway publishes the exchange's own messages there);
* REST answers: ``get_order``, ``list_open_orders``, ``list_executions`` and
  ``list_positions`` return them directly.

The rules the engine applies (``docs/plugins.md``, "Writing an exchange plugin"):

* :class:`ExecutionReport` is the truth for fills: each is booked once, by ``exec_id``, at
  its own quantity, price and fee. Report every execution you learn of, in any order and as
  often as you like.
* :class:`OrderReport` is the truth for the order's status and cumulative figures. When it
  says more has filled than the executions booked so far, the engine books the gap as an
  *inferred* fill and replaces it by the real executions when they arrive.
* Quantities count the instrument's :attr:`~om_plugins.types.Instrument.qty_unit` (base
  coin, or contracts), except an order's ``qty`` when ``qty_unit`` says otherwise.
* Values (``filled_value``, an execution's ``value``) are in the quote coin for base-unit
  instruments and in the base coin for contract (inverse) instruments: Σ qty × price, or
  Σ contracts × contract size / price.
* Fees carry their currency; a negative amount is a rebate.

:func:`encode_reports` / :func:`decode_reports` are a neutral JSON form of these reports, for
exchanges (like the built-in paper exchange) that have no wire format of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from om_plugins.types import Category, OrderStatus, OrderType, QtyUnit, Side, TimeInForce

__all__ = [
    "REPORTS_FORMAT",
    "ExchangeReason",
    "ExecKind",
    "ExecutionReport",
    "Fee",
    "InvalidReport",
    "OrderReport",
    "PositionReport",
    "ReasonCode",
    "Report",
    "ReportFields",
    "StreamGap",
    "decimal_field",
    "decode_reports",
    "encode_reports",
    "in_report_range",
]


class InvalidReport(ValueError):
    """A stream message that can never be turned into reports; the text says why.

    Raise it from ``decode_stream``: the engine dead-letters the message with that reason.
    """


class ReasonCode(StrEnum):
    """Why an exchange refused or cancelled an order, in words every exchange shares.

    Exchange plugins map their own codes onto these (``docs/bybit.md`` has Bybit's table)
    and keep the exchange's code and text beside them in :class:`ExchangeReason`.
    """

    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    INVALID_QTY = "INVALID_QTY"
    MIN_NOTIONAL = "MIN_NOTIONAL"
    INVALID_PRICE = "INVALID_PRICE"
    PRICE_OUT_OF_RANGE = "PRICE_OUT_OF_RANGE"
    REDUCE_ONLY_REJECTED = "REDUCE_ONLY_REJECTED"
    POSITION_MODE = "POSITION_MODE"
    TOO_MANY_ORDERS = "TOO_MANY_ORDERS"
    SYMBOL_NOT_TRADING = "SYMBOL_NOT_TRADING"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"
    IP_BANNED = "IP_BANNED"
    AUTH = "AUTH"
    #: A post-only order would have taken liquidity.
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    #: An IOC/market order found nothing to fill at once.
    NO_IMMEDIATE_FILL = "NO_IMMEDIATE_FILL"
    #: A FOK (or IOC rest) could not fill completely.
    NOT_FULLY_FILLED = "NOT_FULLY_FILLED"
    CANCELLED_BY_USER = "CANCELLED_BY_USER"
    #: Cancelled because it would have grown a position it may only reduce.
    CANCELLED_REDUCE_ONLY = "CANCELLED_REDUCE_ONLY"
    CANCELLED_LIQUIDATION = "CANCELLED_LIQUIDATION"
    CANCELLED_SELF_TRADE = "CANCELLED_SELF_TRADE"
    #: Cancelled by the exchange for another reason (maintenance, settlement, admin).
    CANCELLED_BY_EXCHANGE = "CANCELLED_BY_EXCHANGE"
    #: Refused for a reason without a neutral code: read ``exchange_code``.
    EXCHANGE_REJECTED = "EXCHANGE_REJECTED"


@dataclass(frozen=True, slots=True)
class ExchangeReason:
    """A neutral :class:`ReasonCode` (as a string) with the exchange's own code and text."""

    code: str
    exchange_code: str = ""
    exchange_message: str = ""


class ExecKind(StrEnum):
    """What an execution was. Only trades, liquidations, ADL and deliveries move positions."""

    TRADE = "trade"
    LIQUIDATION = "liquidation"
    ADL = "adl"
    DELIVERY = "delivery"
    FUNDING = "funding"
    OTHER = "other"

    @property
    def moves_position(self) -> bool:
        return self in _MOVES_POSITION


_MOVES_POSITION = frozenset({ExecKind.TRADE, ExecKind.LIQUIDATION, ExecKind.ADL, ExecKind.DELIVERY})


@dataclass(frozen=True, slots=True)
class Fee:
    """A fee in its own currency; negative = a rebate received."""

    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class OrderReport:
    """The exchange's view of one order: its status and cumulative figures.

    ``client_order_id`` is empty for orders placed outside the service without one.
    ``filled_qty`` counts the instrument's unit whatever ``qty_unit`` says about ``qty``.
    """

    exchange_order_id: str
    client_order_id: str
    category: Category
    symbol: str
    side: Side
    status: OrderStatus
    qty: Decimal
    #: ``None`` for order types the engine does not place itself (conditional, TP/SL…).
    order_type: OrderType | None = None
    qty_unit: QtyUnit = QtyUnit.BASE
    price: Decimal | None = None
    filled_qty: Decimal = Decimal(0)
    #: Cumulative executed value (see the module docs for its currency); ``None`` if unknown.
    filled_value: Decimal | None = None
    avg_price: Decimal | None = None
    #: Cumulative fees, one entry per currency.
    fees: tuple[Fee, ...] = ()
    leaves_qty: Decimal | None = None
    time_in_force: TimeInForce | None = None
    reduce_only: bool = False
    #: 0 in one-way mode, 1 (long side) / 2 (short side) in hedge mode.
    position_idx: int = 0
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    #: Why it was rejected or cancelled.
    reason: ExchangeReason | None = None
    created_at: datetime | None = None
    #: The exchange's own last-change time: an older report never moves an order backwards.
    updated_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """One execution (fill) of an order, identified by ``exec_id``."""

    exec_id: str
    exchange_order_id: str
    client_order_id: str
    category: Category
    symbol: str
    side: Side
    #: Positive, in the instrument's unit.
    qty: Decimal
    price: Decimal
    executed_at: datetime
    fee: Fee | None = None
    #: Executed value (see the module docs); ``None``: derived from qty and price.
    value: Decimal | None = None
    is_maker: bool | None = None
    kind: ExecKind = ExecKind.TRADE
    #: The order's quantity and what it had left after this execution, when the exchange says.
    order_qty: Decimal | None = None
    leaves_qty: Decimal | None = None
    order_type: OrderType | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class PositionReport:
    """The exchange's view of one position; ``size`` is signed (> 0 long, < 0 short).

    Spot accounts hold coins, not positions: report each traded coin's balance as the
    position of its spot symbol, with ``avg_entry_price`` ``None``.
    """

    category: Category
    symbol: str
    size: Decimal
    avg_entry_price: Decimal | None = None
    position_idx: int = 0
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    updated_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class StreamGap:
    """The stream the reports come through was interrupted (reconnected): reports sent
    meanwhile may be lost, so the engine reconciles with the exchange."""

    reason: str = ""


Report = OrderReport | ExecutionReport | StreamGap

# -- the neutral JSON form ---------------------------------------------------------------------

#: The ``format`` field of a neutral message.
REPORTS_FORMAT = "om.reports/1"
#: Timestamps outside these bounds are certainly not a real exchange's.
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def encode_reports(reports: Iterable[Report]) -> bytes:
    """One stream message holding ``reports``, in :data:`REPORTS_FORMAT`."""
    return json.dumps(
        {"format": REPORTS_FORMAT, "reports": [_encode(r) for r in reports]},
        default=_json_default,
        separators=(",", ":"),
    ).encode()


def decode_reports(body: bytes) -> list[Report]:
    """The reports of a :data:`REPORTS_FORMAT` message; raises :class:`InvalidReport`."""
    try:
        data = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise InvalidReport(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != REPORTS_FORMAT:
        raise InvalidReport(f"not a {REPORTS_FORMAT} message")
    items = data.get("reports")
    if not isinstance(items, list) or not items:
        raise InvalidReport("reports must be a non-empty list")
    out: list[Report] = []
    for index, item in enumerate(items):
        try:
            out.append(_decode(item))
        except InvalidReport as exc:
            raise InvalidReport(f"reports[{index}]: {exc}") from None
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _fees(fees: Iterable[Fee]) -> list[dict[str, Any]]:
    return [{"amount": f.amount, "currency": f.currency} for f in fees]


def _reason(reason: ExchangeReason | None) -> dict[str, str] | None:
    if reason is None:
        return None
    return {
        "code": reason.code,
        "exchange_code": reason.exchange_code,
        "exchange_message": reason.exchange_message,
    }


def _encode(report: Report) -> dict[str, Any]:
    if isinstance(report, StreamGap):
        return {"kind": "gap", "reason": report.reason}
    if isinstance(report, ExecutionReport):
        return {
            "kind": "execution",
            "exec_id": report.exec_id,
            "exchange_order_id": report.exchange_order_id,
            "client_order_id": report.client_order_id,
            "category": report.category.value,
            "symbol": report.symbol,
            "side": report.side.value,
            "qty": report.qty,
            "price": report.price,
            "executed_at": report.executed_at,
            "fee": _fees([report.fee])[0] if report.fee is not None else None,
            "value": report.value,
            "is_maker": report.is_maker,
            "exec_kind": report.kind.value,
            "order_qty": report.order_qty,
            "leaves_qty": report.leaves_qty,
            "order_type": report.order_type.value if report.order_type else None,
        }
    return {
        "kind": "order",
        "exchange_order_id": report.exchange_order_id,
        "client_order_id": report.client_order_id,
        "category": report.category.value,
        "symbol": report.symbol,
        "side": report.side.value,
        "status": report.status.value,
        "qty": report.qty,
        "order_type": report.order_type.value if report.order_type else None,
        "qty_unit": report.qty_unit.value,
        "price": report.price,
        "filled_qty": report.filled_qty,
        "filled_value": report.filled_value,
        "avg_price": report.avg_price,
        "fees": _fees(report.fees),
        "leaves_qty": report.leaves_qty,
        "time_in_force": report.time_in_force.value if report.time_in_force else None,
        "reduce_only": report.reduce_only,
        "position_idx": report.position_idx,
        "take_profit": report.take_profit,
        "stop_loss": report.stop_loss,
        "reason": _reason(report.reason),
        "created_at": report.created_at,
        "updated_at": report.updated_at,
    }


class ReportFields:
    """Typed reads of one JSON object for building reports; every failure is an
    :class:`InvalidReport` naming the key. Exchange plugins' stream decoders extend it with
    their dialect's forms (a time in epoch milliseconds, say) by overriding a method."""

    def __init__(self, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise InvalidReport(f"expected an object, got {type(data).__name__}")
        self.data: Mapping[str, Any] = data

    def text(self, key: str, *, required: bool = True, limit: int = 128) -> str:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise InvalidReport(f"{key} is required")
            return ""
        if not isinstance(value, str):
            raise InvalidReport(f"{key} must be a string, got {type(value).__name__}")
        if len(value) > limit:
            raise InvalidReport(f"{key} is longer than {limit} characters")
        return value

    def dec(self, key: str, *, required: bool = False, signed: bool = False) -> Decimal | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise InvalidReport(f"{key} is required")
            return None
        number = decimal_field(key, value)
        if number < 0 and not signed:
            raise InvalidReport(f"{key} must not be negative: {value!r}")
        return number

    def enum(self, key: str, kind: type[Any], *, required: bool = True) -> Any:
        value = self.data.get(key)
        if value is None:
            if required:
                raise InvalidReport(f"{key} is required")
            return None
        try:
            return kind(value)
        except ValueError:
            raise InvalidReport(f"{key}: unknown value {value!r}") from None

    def time(self, key: str, *, required: bool = False) -> datetime | None:
        """An ISO 8601 time with its timezone, between 2000 and 2200."""
        value = self.data.get(key)
        if value is None:
            if required:
                raise InvalidReport(f"{key} is required")
            return None
        if not isinstance(value, str):
            raise InvalidReport(f"{key} must be an ISO 8601 timestamp")
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidReport(f"{key} is not an ISO 8601 timestamp: {value!r}") from None
        if at.tzinfo is None:
            raise InvalidReport(f"{key} has no timezone")
        return in_report_range(key, at.astimezone(UTC), value)

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise InvalidReport(f"{key} must be true or false, got {value!r}")


def decimal_field(key: str, value: Any) -> Decimal:
    """``value`` (a decimal string, an int or a Decimal) as a finite Decimal; never a float."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidReport(f"{key} must be a decimal string, got {value!r}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise InvalidReport(f"{key} is not a number: {value!r}") from None
    if not number.is_finite():
        raise InvalidReport(f"{key} must be a finite number: {value!r}")
    return number


def in_report_range(key: str, at: datetime, value: Any) -> datetime:
    """``at`` when it lies between 2000 and 2200 (a report's plausible times)."""
    if not _EARLIEST <= at < _LATEST:
        raise InvalidReport(f"{key} is out of range (2000-2200): {value!r}")
    return at


def _decode_fee(data: Any) -> Fee:
    f = ReportFields(data)
    amount = f.dec("amount", required=True, signed=True)
    assert amount is not None
    return Fee(amount=amount, currency=f.text("currency", limit=16))


def _decode(item: Any) -> Report:
    f = ReportFields(item)
    kind = f.text("kind")
    if kind == "gap":
        return StreamGap(reason=f.text("reason", required=False, limit=500))
    common = {
        "exchange_order_id": f.text("exchange_order_id", required=False, limit=64),
        "client_order_id": f.text("client_order_id", required=False, limit=36),
        "category": f.enum("category", Category),
        "symbol": f.text("symbol", limit=64),
        "side": f.enum("side", Side),
    }
    if not common["exchange_order_id"] and not common["client_order_id"]:
        raise InvalidReport("neither exchange_order_id nor client_order_id")
    if kind == "execution":
        qty = f.dec("qty", required=True)
        price = f.dec("price", required=True)
        executed_at = f.time("executed_at", required=True)
        assert qty is not None and price is not None and executed_at is not None
        if qty <= 0:
            raise InvalidReport("qty must be positive")
        fee = item.get("fee")
        return ExecutionReport(
            exec_id=f.text("exec_id", limit=96),
            qty=qty,
            price=price,
            executed_at=executed_at,
            fee=None if fee is None else _decode_fee(fee),
            value=f.dec("value"),
            is_maker=f.flag("is_maker"),
            kind=f.enum("exec_kind", ExecKind, required=False) or ExecKind.TRADE,
            order_qty=f.dec("order_qty"),
            leaves_qty=f.dec("leaves_qty"),
            order_type=f.enum("order_type", OrderType, required=False),
            raw=item,
            **common,
        )
    if kind != "order":
        raise InvalidReport(f"unknown kind {kind!r}")
    fees = item.get("fees") or []
    if not isinstance(fees, list):
        raise InvalidReport("fees must be a list")
    reason = item.get("reason")
    position_idx = item.get("position_idx", 0)
    if not isinstance(position_idx, int) or isinstance(position_idx, bool):
        raise InvalidReport("position_idx must be 0, 1 or 2")
    if position_idx not in (0, 1, 2):
        raise InvalidReport("position_idx must be 0, 1 or 2")
    qty = f.dec("qty", required=True)
    assert qty is not None
    return OrderReport(
        status=f.enum("status", OrderStatus),
        qty=qty,
        order_type=f.enum("order_type", OrderType, required=False),
        qty_unit=f.enum("qty_unit", QtyUnit, required=False) or QtyUnit.BASE,
        price=f.dec("price"),
        filled_qty=f.dec("filled_qty") or Decimal(0),
        filled_value=f.dec("filled_value"),
        avg_price=f.dec("avg_price"),
        fees=tuple(_decode_fee(fee) for fee in fees),
        leaves_qty=f.dec("leaves_qty"),
        time_in_force=f.enum("time_in_force", TimeInForce, required=False),
        reduce_only=bool(f.flag("reduce_only")),
        position_idx=position_idx,
        take_profit=f.dec("take_profit"),
        stop_loss=f.dec("stop_loss"),
        reason=None if reason is None else _decode_reason(reason),
        created_at=f.time("created_at"),
        updated_at=f.time("updated_at"),
        raw=item,
        **common,
    )


def _decode_reason(data: Any) -> ExchangeReason:
    f = ReportFields(data)
    return ExchangeReason(
        code=f.text("code", limit=32),
        exchange_code=f.text("exchange_code", required=False, limit=64),
        exchange_message=f.text("exchange_message", required=False, limit=2000),
    )
