"""Bybit's order and execution objects → the engine's neutral reports.

Pure functions: no I/O, no adapter, no credentials. The stream (``ws-gateway.order``) and the
REST answers (``/v5/order/realtime``, ``/v5/order/history``, ``/v5/execution/list``,
``/v5/position/list``) go through the same code, so an order reads the same whichever way
it arrived.

Accepted stream messages (:func:`decode_message`):

* the WS-Gateway's envelope ``{"source", "account", "received_at", "data": <message>}``
  around any of the following;
* Bybit's private ``order`` / ``execution`` topic message ``{"topic", "data": [item, …]}``,
  also per category (``order.linear``); several items per message;
* a bare order object (``orderStatus``) or execution object (``execId``);
* the gateway's ``{"type": "gateway.reconnected", …}`` → :class:`~om_plugins.StreamGap`.

Anything else raises :class:`~om_plugins.InvalidReport` with the reason (the engine
dead-letters the message with it), never another exception type. Items of Bybit's
``option`` category are skipped (the engine trades linear, inverse and spot); a message of
nothing else is invalid.

Bybit's conventions (``docs/bybit.md`` has the reasoning):

* numbers are strings, ``""`` is "no value"; ``avgPrice`` ``""`` or ``"0"`` means no fill yet;
* fees may be negative (maker rebates);
* an order's fees come from every key of ``cumFeeDetail`` (``{coin: amount}``), else from
  ``cumExecFee`` in ``feeCurrency``; an execution's fee is ``execFee`` in ``feeCurrency``.
  When the currency is missing: derivatives pay in the settle coin (the base coin for
  inverse); spot pays a positive fee in what it receives (buy: base coin, sell: quote coin)
  and receives a rebate in what it gives (buy: quote, sell: base);
* inverse quantities count contracts and their values are in the base coin; a spot market
  order with ``marketUnit=quoteCoin`` has its ``qty`` in the quote coin (its filled
  quantities are still base coin).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from om_plugins import (
    Category,
    ExchangeReason,
    ExecKind,
    ExecutionReport,
    Fee,
    InvalidReport,
    OrderReport,
    OrderStatus,
    OrderType,
    PositionReport,
    QtyUnit,
    Report,
    Side,
    StreamGap,
    TimeInForce,
)
from om_plugins.reports import ReportFields, decimal_field
from plugins_builtin.bybit.codes import (
    EXEC_KINDS,
    NO_CANCEL_TYPE,
    NO_REJECT_REASON,
    ORDER_STATUSES,
    REJECT_REASONS,
    cancel_reason_code,
    reject_reason_code,
)

__all__ = [
    "MAX_CLIENT_ORDER_ID",
    "MAX_EXCHANGE_ORDER_ID",
    "MAX_EXEC_ID",
    "MAX_SYMBOL",
    "RECONNECTED",
    "CoinResolver",
    "Coins",
    "decode_message",
    "execution_report",
    "guess_coins",
    "order_from_executions",
    "order_report",
    "position_report",
]

#: Column widths of the engine's database: a longer id can never be stored.
MAX_EXCHANGE_ORDER_ID = 64
MAX_CLIENT_ORDER_ID = 36
MAX_SYMBOL = 64
MAX_EXEC_ID = 96
_MAX_COIN = 16
_MAX_REASON = 64
#: The WS-Gateway's control message after every (re)connection.
RECONNECTED = "gateway.reconnected"
#: Epoch milliseconds outside these bounds are not a real exchange's times.
_EARLIEST_MS = 946_684_800_000  # 2000-01-01
_LATEST_MS = 7_258_118_400_000  # 2200-01-01
_TOPICS = ("order", "execution")
_SUPPORTED = {c.value: c for c in Category}
#: Bybit's categories the engine does not trade: their items are skipped.
_SKIPPED = frozenset({"option"})
_SIDES = {"Buy": Side.BUY, "Sell": Side.SELL}
_ORDER_TYPES = {"Market": OrderType.MARKET, "Limit": OrderType.LIMIT}
#: ``stopOrderType`` values of plain orders; any other is a conditional or TP/SL order.
_PLAIN = frozenset({"", "UNKNOWN"})
_TIME_IN_FORCE = {t.value: t for t in TimeInForce}
#: Statuses that end an order without it filling completely: they carry a reason.
_WITH_REASON = frozenset(
    {
        OrderStatus.CANCELLED,
        OrderStatus.PARTIALLY_FILLED_CANCELLED,
        OrderStatus.REJECTED,
        OrderStatus.DEACTIVATED,
    }
)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Coins:
    """The coins of one instrument: ``base``/``quote`` name it, ``settle`` pays its fees
    and PnL (derivatives)."""

    base: str
    quote: str
    settle: str


#: Known coins of ``(category, symbol)``, e.g. from cached instrument rules; ``None`` falls
#: back to :func:`guess_coins`.
CoinResolver = Callable[[Category, str], "Coins | None"]

#: Spot quote coins, longest first so ``USDT`` wins over ``USD``.
_SPOT_QUOTES = (
    "FDUSD",
    "USDT",
    "USDC",
    "USDE",
    "USD1",
    "EUR",
    "BRL",
    "TRY",
    "PLN",
    "DAI",
    "BTC",
    "ETH",
    "MNT",
    "USD",
)


def guess_coins(category: Category, symbol: str) -> Coins | None:
    """Coins from Bybit's symbol conventions, or ``None`` when the symbol does not tell.

    Linear contracts settle in USDT (``BTCUSDT``, ``BTCUSDT-26DEC25``) or USDC (``BTCPERP``,
    ``BTC-26DEC25``); inverse ones (``BTCUSD``, ``BTCUSDH26``) in their base coin.
    """
    if category is Category.INVERSE:
        base, found, _ = symbol.partition("USD")
        return Coins(base, "USD", base) if found and base else None
    if category is Category.LINEAR:
        head = symbol.split("-", 1)[0]
        if head.endswith("USDT"):
            return Coins(head[:-4], "USDT", "USDT") if len(head) > 4 else None
        if head.endswith("PERP"):
            return Coins(head[:-4], "USDC", "USDC") if len(head) > 4 else None
        if head.endswith("USDC"):
            return Coins(head[:-4], "USDC", "USDC") if len(head) > 4 else None
        if "-" in symbol and head:  # USDC-settled futures: BTC-26DEC25
            return Coins(head, "USDC", "USDC")
        return None
    for quote in _SPOT_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return Coins(symbol[: -len(quote)], quote, quote)
    return None


def _coins(category: Category, symbol: str, resolve: CoinResolver | None) -> Coins:
    known = resolve(category, symbol) if resolve is not None else None
    if known is None:
        known = guess_coins(category, symbol)
    if known is None:
        raise InvalidReport(
            f"the fee currency of {category.value} {symbol} is not given and its coins are unknown"
        )
    return known


def fee_currency(
    category: Category, symbol: str, side: Side, amount: Decimal, resolve: CoinResolver | None
) -> str:
    """The currency of a fee Bybit reported without one (see the module docs)."""
    coins = _coins(category, symbol, resolve)
    if category is not Category.SPOT:
        return coins.settle
    pays_in_base = side is Side.BUY
    if amount < 0:
        pays_in_base = not pays_in_base
    return coins.base if pays_in_base else coins.quote


# -- messages ----------------------------------------------------------------------------------


class _Unsupported(Exception):
    """An item of a category the engine does not trade."""


def decode_message(body: bytes, *, resolve: CoinResolver | None = None) -> list[Report]:
    """The reports in one ``ws-gateway.order`` message, in order (see the module docs)."""
    data = _json(body)
    if not isinstance(data, dict):
        raise InvalidReport(f"expected a JSON object, got {type(data).__name__}")
    if _is_control(data):
        return [_gap(data)]
    if "topic" not in data and "data" in data and not _is_item(data):
        inner = data["data"]
        if not isinstance(inner, dict):
            raise InvalidReport(f"data must be an object, got {type(inner).__name__}")
        if _is_control(inner):
            return [_gap(inner)]
        if "topic" not in inner and "data" in inner and not _is_item(inner):
            raise InvalidReport("an envelope inside an envelope")
        data = inner
    if "topic" in data:
        return _topic_message(data, resolve)
    if not _is_item(data):
        raise InvalidReport("neither a stream message, an order nor an execution")
    try:
        return [_item(data, None, None, resolve)]
    except _Unsupported as exc:
        raise InvalidReport(str(exc)) from None


def _json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidReport(
            f"not valid JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidReport("not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise InvalidReport(f"not valid JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _is_control(data: Mapping[str, Any]) -> bool:
    return data.get("type") == RECONNECTED or data.get("op") == RECONNECTED


def _gap(data: Mapping[str, Any]) -> StreamGap:
    account, at = data.get("account"), data.get("at")
    where = f" (account {account})" if isinstance(account, str) and account else ""
    when = f" at {at}" if isinstance(at, str) and at else ""
    return StreamGap(reason=f"Bybit WS-Gateway (re)connected{when}{where}"[:500])


def _is_item(data: Mapping[str, Any]) -> bool:
    return "execId" in data or "orderStatus" in data


def _topic_message(message: Mapping[str, Any], resolve: CoinResolver | None) -> list[Report]:
    topic = message["topic"]
    if not isinstance(topic, str):
        raise InvalidReport("topic must be a string")
    base, _, suffix = topic.partition(".")
    if base not in _TOPICS or topic == "execution.fast":
        # execution.fast carries no fees: booking from it would lose them for good.
        raise InvalidReport(f"unsupported topic {topic!r} (only order and execution)")
    hint: Category | None = None
    if suffix:
        if suffix in _SKIPPED:
            raise InvalidReport(f"topic {topic!r}: category {suffix!r} is not supported")
        if suffix not in _SUPPORTED:
            raise InvalidReport(f"unsupported topic {topic!r}")
        hint = _SUPPORTED[suffix]
    if "data" not in message:
        raise InvalidReport("message has no data")
    items = message["data"]
    if not isinstance(items, list) or not items:
        raise InvalidReport("data must be a non-empty list")
    reports: list[Report] = []
    skipped: list[str] = []
    for index, item in enumerate(items):
        try:
            reports.append(_item(item, base, hint, resolve))
        except _Unsupported as exc:
            skipped.append(str(exc))
        except InvalidReport as exc:
            raise InvalidReport(f"data[{index}]: {exc}") from None
    if not reports:
        raise InvalidReport(f"nothing to apply: {skipped[0]}")
    return reports


def _item(
    item: Any, topic: str | None, hint: Category | None, resolve: CoinResolver | None
) -> OrderReport | ExecutionReport:
    if not isinstance(item, dict):
        raise InvalidReport(f"expected an object, got {type(item).__name__}")
    if topic == "execution" or (topic is None and "execId" in item):
        return execution_report(item, hint, resolve=resolve, skip_unsupported=True)
    return order_report(item, hint, resolve=resolve, skip_unsupported=True)


# -- fields ------------------------------------------------------------------------------------


class _Fields(ReportFields):
    """The SDK's typed reads, with Bybit's forms: times in epoch milliseconds, ``Buy``/``Sell``,
    ``positionIdx``, categories; every failure is an :class:`InvalidReport`."""

    def positive(self, key: str) -> Decimal | None:
        """A price that is ``None`` unless positive (``avgPrice`` is ``"0"`` before a fill)."""
        value = self.dec(key)
        return value if value is not None and value > 0 else None

    def time(self, key: str, *, required: bool = False) -> datetime | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise InvalidReport(f"{key} is required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidReport(f"{key} must be epoch milliseconds, got {value!r}")
        text = str(value).strip()
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not (text.isascii() and text.isdigit()) or len(text) > 16:
            raise InvalidReport(f"{key} is not a time in epoch milliseconds: {value!r}")
        ms = int(text)
        if not _EARLIEST_MS <= ms < _LATEST_MS:
            raise InvalidReport(f"{key} is out of range (2000-2200): {value!r}")
        seconds, millis = divmod(ms, 1000)
        return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)

    def side(self) -> Side:
        value = self.data.get("side")
        if value is None or value == "":
            raise InvalidReport("side is required")
        side = _SIDES.get(value) if isinstance(value, str) else None
        if side is None:
            raise InvalidReport(f"side must be Buy or Sell, got {value!r}")
        return side

    def position_idx(self) -> int:
        value = self.data.get("positionIdx", 0)
        if isinstance(value, str) and value in ("0", "1", "2"):
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1, 2):
            raise InvalidReport(f"positionIdx must be 0, 1 or 2, got {value!r}")
        return value

    def category(self, hint: Category | None, *, skip_unsupported: bool) -> Category:
        value = self.data.get("category")
        if value is None or value == "":
            if hint is None:
                raise InvalidReport("category is required")
            return hint
        if not isinstance(value, str):
            raise InvalidReport(f"category must be a string, got {type(value).__name__}")
        if value in _SKIPPED and skip_unsupported:
            raise _Unsupported(f"category {value!r} is not supported")
        category = _SUPPORTED.get(value)
        if category is None:
            raise InvalidReport(f"unknown category {value!r}")
        if hint is not None and category is not hint:
            raise InvalidReport(f"category {value!r} in a {hint.value} message")
        return category


def _order_type(f: _Fields) -> OrderType | None:
    """Market or limit for plain orders; ``None`` for conditional and TP/SL orders."""
    stop = f.data.get("stopOrderType")
    if stop is not None and (not isinstance(stop, str) or stop not in _PLAIN):
        return None
    kind = f.data.get("orderType")
    return _ORDER_TYPES.get(kind) if isinstance(kind, str) else None


def _fee_detail(f: _Fields) -> tuple[Fee, ...] | None:
    """Every ``cumFeeDetail`` entry; ``None`` when Bybit sent none."""
    detail = f.data.get("cumFeeDetail")
    if detail is None or detail == "" or detail == {}:
        return None
    if not isinstance(detail, dict):
        raise InvalidReport(f"cumFeeDetail must be an object, got {type(detail).__name__}")
    fees: list[Fee] = []
    for coin, raw in detail.items():
        if not coin or len(coin) > _MAX_COIN:
            raise InvalidReport(f"cumFeeDetail has an invalid coin {coin!r}")
        amount = decimal_field(f"cumFeeDetail.{coin}", raw)
        if amount != 0:
            fees.append(Fee(amount=amount, currency=coin))
    return tuple(sorted(fees, key=lambda fee: fee.currency))


def _reason(f: _Fields, status: OrderStatus) -> ExchangeReason | None:
    if status not in _WITH_REASON:
        return None
    reject = f.text("rejectReason", limit=_MAX_REASON, required=False)
    cancel = f.text("cancelType", limit=_MAX_REASON, required=False)
    has_reject = reject not in NO_REJECT_REASON
    has_cancel = cancel not in NO_CANCEL_TYPE
    # A cancel type says who cancelled; a reject reason says why the matching engine refused
    # or ended the order, which is the more precise of the two when both are set.
    specific = reject in REJECT_REASONS
    if has_reject and (status is OrderStatus.REJECTED or not has_cancel or specific):
        other = f" (cancelType {cancel})" if has_cancel else ""
        code = reject_reason_code(reject).value
        return ExchangeReason(code, reject, f"rejectReason {reject}{other}")
    if has_cancel:
        other = f" (rejectReason {reject})" if has_reject else ""
        code = cancel_reason_code(cancel).value
        return ExchangeReason(code, cancel, f"cancelType {cancel}{other}")
    return None


# -- reports -----------------------------------------------------------------------------------


def order_report(
    item: Mapping[str, Any],
    category: Category | None = None,
    *,
    resolve: CoinResolver | None = None,
    skip_unsupported: bool = False,
) -> OrderReport:
    """One order of the ``order`` topic, ``/v5/order/realtime`` or ``/v5/order/history``.

    ``category`` is the category the answer is for (REST) or the topic's; an item's own
    ``category`` must agree with it.
    """
    f = _Fields(item)
    order_id = f.text("orderId", limit=MAX_EXCHANGE_ORDER_ID, required=False)
    link = f.text("orderLinkId", limit=MAX_CLIENT_ORDER_ID, required=False)
    if not order_id and not link:
        raise InvalidReport("order has neither orderId nor orderLinkId")
    symbol = f.text("symbol", limit=MAX_SYMBOL)
    side = f.side()
    raw_status = f.data.get("orderStatus")
    if raw_status is None or raw_status == "":
        raise InvalidReport("orderStatus is required")
    status = ORDER_STATUSES.get(raw_status) if isinstance(raw_status, str) else None
    if status is None:
        raise InvalidReport(f"unknown orderStatus {raw_status!r}")
    qty = f.dec("qty", required=True)
    assert qty is not None
    cat = f.category(category, skip_unsupported=skip_unsupported)
    filled = f.dec("cumExecQty") or _ZERO
    if status is OrderStatus.REJECTED and filled > 0:
        # What filled before the rejection stays filled: the order ends cancelled.
        status = OrderStatus.CANCELLED
    order_type = _order_type(f)
    market_unit = f.data.get("marketUnit")
    if cat is Category.INVERSE:
        unit = QtyUnit.CONTRACTS
    elif cat is Category.SPOT and order_type is OrderType.MARKET and market_unit == "quoteCoin":
        unit = QtyUnit.QUOTE
    else:
        unit = QtyUnit.BASE
    fees = _fee_detail(f)
    if fees is None:
        total = f.dec("cumExecFee", signed=True)
        fees = ()
        if total:
            currency = f.text("feeCurrency", limit=_MAX_COIN, required=False)
            if not currency:
                currency = fee_currency(cat, symbol, side, total, resolve)
            fees = (Fee(amount=total, currency=currency),)
    tif = f.data.get("timeInForce")
    return OrderReport(
        exchange_order_id=order_id,
        client_order_id=link,
        category=cat,
        symbol=symbol,
        side=side,
        status=status,
        qty=qty,
        order_type=order_type,
        qty_unit=unit,
        # A market order's "price" is Bybit's slippage bound, not a limit.
        price=f.positive("price") if order_type is not OrderType.MARKET else None,
        filled_qty=filled,
        filled_value=f.dec("cumExecValue"),
        avg_price=f.positive("avgPrice"),
        fees=fees,
        leaves_qty=f.dec("leavesQty"),
        time_in_force=_TIME_IN_FORCE.get(tif) if isinstance(tif, str) else None,
        reduce_only=bool(f.flag("reduceOnly")),
        position_idx=f.position_idx(),
        take_profit=f.positive("takeProfit"),
        stop_loss=f.positive("stopLoss"),
        reason=_reason(f, status),
        created_at=f.time("createdTime"),
        updated_at=f.time("updatedTime"),
        raw=dict(item),
    )


def execution_report(
    item: Mapping[str, Any],
    category: Category | None = None,
    *,
    resolve: CoinResolver | None = None,
    skip_unsupported: bool = False,
) -> ExecutionReport:
    """One execution of the ``execution`` topic or ``/v5/execution/list``."""
    f = _Fields(item)
    exec_id = f.text("execId", limit=MAX_EXEC_ID)
    order_id = f.text("orderId", limit=MAX_EXCHANGE_ORDER_ID, required=False)
    link = f.text("orderLinkId", limit=MAX_CLIENT_ORDER_ID, required=False)
    if not order_id and not link:
        raise InvalidReport("execution has neither orderId nor orderLinkId")
    symbol = f.text("symbol", limit=MAX_SYMBOL)
    side = f.side()
    qty = f.dec("execQty", required=True)
    price = f.dec("execPrice", required=True)
    assert qty is not None and price is not None
    if qty <= 0:
        raise InvalidReport(f"execQty must be positive, got {qty}")
    raw_kind = f.data.get("execType")
    if raw_kind is not None and not isinstance(raw_kind, str):
        raise InvalidReport(f"execType must be a string, got {raw_kind!r}")
    kind = EXEC_KINDS.get(raw_kind, ExecKind.OTHER) if raw_kind else ExecKind.TRADE
    if price <= 0 and kind.moves_position:
        raise InvalidReport(f"execPrice must be positive, got {price}")
    executed_at = f.time("execTime", required=True)
    assert executed_at is not None
    cat = f.category(category, skip_unsupported=skip_unsupported)
    amount = f.dec("execFee", signed=True)
    fee = None
    if amount is not None:
        currency = f.text("feeCurrency", limit=_MAX_COIN, required=False)
        if not currency:
            currency = fee_currency(cat, symbol, side, amount, resolve)
        fee = Fee(amount=amount, currency=currency)
    order_type = _order_type(f)
    # A spot market order's qty may count the quote coin (marketUnit=quoteCoin, Bybit's
    # default for buys); REST executions do not say which, so only an explicit baseCoin
    # keeps the order's quantities.
    in_quote = (
        cat is Category.SPOT
        and order_type is OrderType.MARKET
        and f.data.get("marketUnit") != "baseCoin"
    ) or f.data.get("marketUnit") == "quoteCoin"
    return ExecutionReport(
        exec_id=exec_id,
        exchange_order_id=order_id,
        client_order_id=link,
        category=cat,
        symbol=symbol,
        side=side,
        qty=qty,
        price=price,
        executed_at=executed_at,
        fee=fee,
        value=f.dec("execValue"),
        is_maker=f.flag("isMaker"),
        kind=kind,
        order_qty=None if in_quote else f.dec("orderQty"),
        leaves_qty=None if in_quote else f.dec("leavesQty"),
        order_type=order_type,
        raw=dict(item),
    )


def position_report(item: Mapping[str, Any], category: Category) -> PositionReport | None:
    """One position of ``/v5/position/list``; ``None`` when it is flat."""
    f = _Fields(item)
    symbol = f.text("symbol", limit=MAX_SYMBOL)
    size = f.dec("size") or _ZERO
    side = f.data.get("side")
    if side == "Sell":
        size = -size
    elif side not in ("Buy", "", "None", None):
        raise InvalidReport(f"unknown position side {side!r}")
    if size == 0:
        return None
    if side not in ("Buy", "Sell"):
        raise InvalidReport(f"a position of size {size} has no side")
    return PositionReport(
        category=f.category(category, skip_unsupported=False),
        symbol=symbol,
        size=size,
        avg_entry_price=f.positive("avgPrice"),
        position_idx=f.position_idx(),
        mark_price=f.positive("markPrice"),
        unrealized_pnl=f.dec("unrealisedPnl", signed=True),
        updated_at=f.time("updatedTime"),
        raw=dict(item),
    )


def order_from_executions(executions: Sequence[ExecutionReport]) -> OrderReport:
    """Rebuild an order from its executions, for orders that have dropped out of both
    ``/v5/order/realtime`` and ``/v5/order/history``.

    Only what executions tell: ``FILLED`` when nothing was left, otherwise
    ``PARTIALLY_FILLED`` (a later cancellation of the rest is not visible here); fees summed
    per currency.
    """
    trades = sorted((e for e in executions if e.kind.moves_position), key=lambda e: e.executed_at)
    if not trades:
        raise ValueError("no trades to rebuild an order from")
    first, last = trades[0], trades[-1]
    filled = sum((e.qty for e in trades), _ZERO)
    values = [e.value for e in trades]
    value = sum((v for v in values if v is not None), _ZERO) if None not in values else None
    fees: dict[str, Decimal] = {}
    for e in trades:
        if e.fee is not None:
            fees[e.fee.currency] = fees.get(e.fee.currency, _ZERO) + e.fee.amount
    quantities = [e.order_qty for e in trades if e.order_qty is not None]
    qty = max(quantities) if quantities else filled
    # Executions of one millisecond come in any order: judge by all of them, not the "last".
    done = filled >= qty or any(e.leaves_qty == 0 for e in trades)
    avg = sum((e.qty * e.price for e in trades), _ZERO) / filled
    order_type = last.order_type
    raw_price = last.raw.get("orderPrice")
    price = None
    if order_type is OrderType.LIMIT:
        price = _Fields({"orderPrice": raw_price}).positive("orderPrice")
    return OrderReport(
        exchange_order_id=last.exchange_order_id,
        client_order_id=last.client_order_id,
        category=last.category,
        symbol=last.symbol,
        side=last.side,
        status=OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED,
        qty=qty,
        order_type=order_type,
        qty_unit=QtyUnit.CONTRACTS if last.category is Category.INVERSE else QtyUnit.BASE,
        price=price,
        filled_qty=filled,
        filled_value=value,
        avg_price=avg if last.category is not Category.INVERSE else _inverse_avg(trades),
        fees=tuple(Fee(amount=a, currency=c) for c, a in sorted(fees.items()) if a != 0),
        leaves_qty=max(qty - filled, _ZERO),
        created_at=first.executed_at,
        updated_at=last.executed_at,
        raw={"source": "execution-list", "executions": [dict(e.raw) for e in trades]},
    )


def _inverse_avg(trades: Sequence[ExecutionReport]) -> Decimal:
    """Contracts are worth a fixed amount of USD: their average price is harmonic."""
    contracts = sum((e.qty for e in trades), _ZERO)
    coins = sum((e.qty / e.price for e in trades), _ZERO)
    return contracts / coins
