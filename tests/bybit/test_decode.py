"""Bybit's stream messages and REST items → neutral reports, on Bybit's documented payloads
(copied into tests/flow/bybit_examples) and on hand-made ones for what the docs do not show."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from om_plugins import (
    Category,
    ExecKind,
    ExecutionReport,
    Fee,
    InvalidReport,
    OrderReport,
    OrderStatus,
    OrderType,
    PositionReport,
    QtyUnit,
    ReasonCode,
    Side,
    StreamGap,
    TimeInForce,
)
from plugins_builtin.bybit.decode import (
    Coins,
    decode_message,
    execution_report,
    guess_coins,
    order_from_executions,
    order_report,
    position_report,
)
from plugins_builtin.bybit.gateway import control_message, envelope
from tests.flow.bybit_messages import EXAMPLES

D = Decimal


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(), parse_float=Decimal)
    return data


def body(message: Any) -> bytes:
    return json.dumps(message, default=str).encode()


def one(message: Any) -> Any:
    [report] = decode_message(body(message))
    return report


def linear_order(**changes: Any) -> dict[str, Any]:
    """The docs' order-stream item, as a linear BTCUSDT limit order."""
    item = copy.deepcopy(example("docs_ws_order_stream_message.json")["data"][0])
    item.update(category="linear", symbol="BTCUSDT", orderType="Limit", stopOrderType="")
    item.update(changes)
    return item


def linear_execution(**changes: Any) -> dict[str, Any]:
    item = copy.deepcopy(example("docs_ws_execution_stream_message.json")["data"][0])
    item.update(changes)
    return item


def stream(*items: dict[str, Any], topic: str = "order") -> dict[str, Any]:
    return {"id": "m-1", "topic": topic, "creationTime": 1672364262474, "data": list(items)}


# -- the docs' own payloads ---------------------------------------------------------------------


def test_the_docs_order_message_is_an_option_order_and_is_refused_clearly() -> None:
    raw = (EXAMPLES / "docs_ws_order_stream_message.json").read_bytes()
    with pytest.raises(InvalidReport, match="category 'option' is not supported"):
        decode_message(raw)


def test_the_docs_order_item_as_a_linear_order() -> None:
    message = example("docs_ws_order_stream_message.json")
    message["data"][0].update(category="linear", symbol="BTCUSDT")
    report = one(message)
    assert isinstance(report, OrderReport)
    assert (report.exchange_order_id, report.client_order_id) == (
        "5cf98598-39a7-459e-97bf-76ca765ee020",
        "",
    )
    assert (report.category, report.symbol, report.side) == (
        Category.LINEAR,
        "BTCUSDT",
        Side.SELL,
    )
    assert report.status is OrderStatus.FILLED and report.order_type is OrderType.MARKET
    assert report.qty == 1 and report.filled_qty == 1 and report.filled_value == 75
    assert report.avg_price == 75 and report.price is None  # a market order has no limit
    assert report.leaves_qty is None  # "" is no value
    # Fees from every key of cumFeeDetail (cumExecFee is deprecated on linear).
    assert report.fees == (Fee(D("0.00242968"), "MNT"),)
    assert report.time_in_force is TimeInForce.IOC and report.reason is None
    assert report.created_at == datetime(2022, 12, 30, 1, 37, 42, 444000, tzinfo=UTC)
    assert report.updated_at == datetime(2022, 12, 30, 1, 37, 42, 457000, tzinfo=UTC)
    assert report.qty_unit is QtyUnit.BASE and report.position_idx == 0


def test_the_docs_execution_message() -> None:
    report = one(example("docs_ws_execution_stream_message.json"))
    assert isinstance(report, ExecutionReport)
    assert report.exec_id == "0ab1bdf7-4219-438b-b30a-32ec863018f7"
    assert report.exchange_order_id == "9aac161b-8ed6-450d-9cab-c5cc67c21784"
    assert (report.category, report.symbol, report.side) == (
        Category.LINEAR,
        "BTCUSDT",
        Side.SELL,
    )
    assert (report.qty, report.price, report.value) == (D("0.5"), D("95900.1"), D("47950.05"))
    assert report.fee == Fee(D("26.3725275"), "USDT")
    assert report.kind is ExecKind.TRADE and report.is_maker is False
    assert report.order_qty == D("0.5") and report.leaves_qty == 0
    assert report.order_type is OrderType.MARKET
    assert report.executed_at == datetime(2025, 5, 3, 11, 6, 40, 353000, tzinfo=UTC)


def test_the_docs_rest_items() -> None:
    realtime = example("docs_order_realtime_response.json")["result"]["list"][0]
    order = order_report(realtime, Category.LINEAR)
    assert order.status is OrderStatus.NEW and order.price == D("1600.00")
    assert order.avg_price is None and order.filled_qty == 0  # avgPrice "0": no fill yet
    assert order.position_idx == 1  # hedge mode, long side
    assert (order.take_profit, order.stop_loss) == (D("2500.00"), D("1500.00"))
    assert order.fees == (Fee(D("0.00242968"), "MNT"),)

    history = example("docs_order_history_response.json")["result"]["list"][0]
    cancelled = order_report(history, Category.LINEAR)
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.reason is not None
    assert cancelled.reason.code == ReasonCode.POST_ONLY_WOULD_TAKE
    assert cancelled.reason.exchange_code == "EC_PostOnlyWillTakeLiquidity"
    assert cancelled.time_in_force is TimeInForce.POST_ONLY

    listed = example("docs_execution_list_response.json")["result"]["list"][0]
    execution = execution_report(listed, Category.LINEAR)
    # feeCurrency is "" on REST; ETHPERP is a USDC perpetual: its fees are in USDC.
    assert execution.fee == Fee(D("0.071409"), "USDC")
    assert execution.is_maker is False and execution.leaves_qty == 0


def test_the_docs_position_item() -> None:
    item = example("docs_position_list_response.json")["result"]["list"][0]
    report = position_report(item, Category.INVERSE)
    assert isinstance(report, PositionReport)
    assert report.size == D("-300") and report.avg_entry_price == D("27464.50441675")
    assert report.unrealized_pnl == D("-0.00029413") and report.mark_price == D("28224.50")
    assert position_report({**item, "side": "", "size": "0"}, Category.INVERSE) is None


# -- message shapes -----------------------------------------------------------------------------


def test_the_gateway_envelope_and_several_items_per_message() -> None:
    items = [
        linear_order(orderId="a", orderLinkId="la", orderStatus="New", cumExecQty="0"),
        linear_order(orderId="b", orderLinkId="lb", orderStatus="Cancelled", cumExecQty="0"),
    ]
    raw = json.dumps(stream(*items), default=str)
    wrapped = envelope(raw, account="main", received_at="2026-11-25T10:00:00+00:00")
    reports = decode_message(wrapped)
    assert [(r.client_order_id, r.status) for r in reports] == [
        ("la", OrderStatus.NEW),
        ("lb", OrderStatus.CANCELLED),
    ]


def test_category_topics_bare_objects_and_gaps() -> None:
    item = linear_order()
    del item["category"]
    assert one(stream(item, topic="order.linear")).category is Category.LINEAR
    with pytest.raises(InvalidReport, match="category 'linear' in a spot message"):
        decode_message(body(stream(linear_order(), topic="order.spot")))
    assert isinstance(one(linear_order()), OrderReport)
    assert isinstance(one(linear_execution()), ExecutionReport)
    gap = one(json.loads(control_message("gateway.reconnected", account="main", at="T1")))
    assert isinstance(gap, StreamGap) and "main" in gap.reason and "T1" in gap.reason
    wrapped = {"source": "ws-gateway", "data": {"type": "gateway.reconnected"}}
    assert isinstance(one(wrapped), StreamGap)


def test_option_items_are_skipped_beside_supported_ones() -> None:
    option = example("docs_ws_order_stream_message.json")["data"][0]
    reports = decode_message(body(stream(option, linear_order(orderId="kept"))))
    assert [r.exchange_order_id for r in reports] == ["kept"]


# -- Bybit's semantics --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "filled", "status"),
    [
        ("Created", "0", OrderStatus.NEW),
        ("New", "0", OrderStatus.NEW),
        ("PartiallyFilled", "0.5", OrderStatus.PARTIALLY_FILLED),
        ("Untriggered", "0", OrderStatus.UNTRIGGERED),
        ("Triggered", "0", OrderStatus.TRIGGERED),
        ("Filled", "1", OrderStatus.FILLED),
        ("Cancelled", "0", OrderStatus.CANCELLED),
        ("Cancelled", "0.5", OrderStatus.CANCELLED),  # derivatives: cancelled with fills
        ("PartiallyFilledCanceled", "0.5", OrderStatus.PARTIALLY_FILLED_CANCELLED),
        ("Rejected", "0", OrderStatus.REJECTED),
        ("Rejected", "0.5", OrderStatus.CANCELLED),  # what filled stays filled
        ("Deactivated", "0", OrderStatus.DEACTIVATED),
    ],
)
def test_order_statuses(raw: str, filled: str, status: OrderStatus) -> None:
    assert one(linear_order(orderStatus=raw, cumExecQty=filled)).status is status


@pytest.mark.parametrize("avg", ["", "0", "0.00"])
def test_no_average_before_a_fill(avg: str) -> None:
    assert one(linear_order(avgPrice=avg, orderStatus="New")).avg_price is None


def test_negative_fees_are_rebates() -> None:
    order = one(linear_order(cumFeeDetail={"USDT": "-0.059"}, cumExecFee="-0.059"))
    assert order.fees == (Fee(D("-0.059"), "USDT"),)
    execution = one(linear_execution(execFee="-0.059", isMaker=True))
    assert execution.fee == Fee(D("-0.059"), "USDT")


def test_every_fee_currency_of_an_order() -> None:
    detail = {"USDT": "-0.118", "BTC": "0.00002", "MNT": "0"}
    order = one(linear_order(category="spot", cumFeeDetail=detail))
    assert order.fees == (Fee(D("0.00002"), "BTC"), Fee(D("-0.118"), "USDT"))
    fallback = one(linear_order(cumFeeDetail={}, cumExecFee="0.33", feeCurrency="USDT"))
    assert fallback.fees == (Fee(D("0.33"), "USDT"),)
    none = one(linear_order(cumFeeDetail={}, cumExecFee="0", feeCurrency=""))
    assert none.fees == ()


@pytest.mark.parametrize(
    ("category", "symbol", "side", "fee", "currency"),
    [
        ("spot", "BTCUSDT", "Buy", "0.00001", "BTC"),  # a buy pays in what it receives
        ("spot", "BTCUSDT", "Sell", "0.6", "USDT"),
        ("spot", "BTCUSDT", "Buy", "-0.118", "USDT"),  # a rebate comes in what it gives
        ("spot", "BTCUSDT", "Sell", "-0.00001", "BTC"),
        ("spot", "ETHBTC", "Sell", "0.0001", "BTC"),
        ("linear", "BTCUSDT", "Buy", "0.33", "USDT"),
        ("linear", "BTCPERP", "Sell", "0.33", "USDC"),
        ("linear", "BTC-26DEC25", "Sell", "0.33", "USDC"),
        ("linear", "BTCUSDT-26DEC25", "Sell", "0.33", "USDT"),
        ("inverse", "BTCUSD", "Buy", "0.0000055", "BTC"),  # inverse settles in the base coin
        ("inverse", "ETHUSDH26", "Sell", "0.0000055", "ETH"),
    ],
)
def test_a_missing_fee_currency_follows_the_documented_rule(
    category: str, symbol: str, side: str, fee: str, currency: str
) -> None:
    execution = one(
        linear_execution(category=category, symbol=symbol, side=side, execFee=fee, feeCurrency="")
    )
    assert execution.fee == Fee(D(fee), currency)
    order = one(
        linear_order(
            category=category,
            symbol=symbol,
            side=side,
            cumFeeDetail={},
            cumExecFee=fee,
            feeCurrency="",
        )
    )
    assert order.fees == (Fee(D(fee), currency),)


def test_known_coins_win_over_the_symbol_rule() -> None:
    def resolve(category: Category, symbol: str) -> Coins | None:
        return Coins("XYZ", "USDT", "USDT") if symbol == "XYZUSDT" else None

    item = linear_execution(category="spot", symbol="XYZUSDT", side="Buy", feeCurrency="")
    [report] = decode_message(body(item), resolve=resolve)
    assert report.fee.currency == "XYZ"
    assert guess_coins(Category.SPOT, "USDT") is None
    with pytest.raises(InvalidReport, match="fee currency"):
        decode_message(body(linear_execution(category="spot", symbol="ABCXYZ", feeCurrency="")))


def test_quantity_units() -> None:
    quote_buy = linear_order(
        category="spot", orderType="Market", marketUnit="quoteCoin", qty="100", cumExecQty="0.0016"
    )
    report = one(quote_buy)
    assert report.qty_unit is QtyUnit.QUOTE and report.qty == 100
    assert report.filled_qty == D("0.0016")  # still base coin
    assert one({**quote_buy, "marketUnit": "baseCoin"}).qty_unit is QtyUnit.BASE
    inverse = one(linear_order(category="inverse", symbol="BTCUSD", qty="600"))
    assert inverse.qty_unit is QtyUnit.CONTRACTS
    execution = one(linear_execution(category="spot", marketUnit="quoteCoin", orderQty="100"))
    assert execution.order_qty is None and execution.leaves_qty is None


def test_conditional_orders_have_no_plain_order_type() -> None:
    assert one(linear_order(stopOrderType="Stop")).order_type is None
    assert one(linear_order(stopOrderType="UNKNOWN")).order_type is OrderType.LIMIT
    assert one(linear_order(orderType="Limit", price="50000")).price == 50000


@pytest.mark.parametrize(
    ("exec_type", "kind"),
    [
        ("Trade", ExecKind.TRADE),
        ("BustTrade", ExecKind.LIQUIDATION),
        ("AdlTrade", ExecKind.ADL),
        ("Delivery", ExecKind.DELIVERY),
        ("Settle", ExecKind.DELIVERY),
        ("Funding", ExecKind.FUNDING),
        ("BlockTrade", ExecKind.TRADE),
        ("SomethingNew", ExecKind.OTHER),
    ],
)
def test_exec_types(exec_type: str, kind: ExecKind) -> None:
    assert one(linear_execution(execType=exec_type)).kind is kind


@pytest.mark.parametrize(
    ("status", "cancel_type", "reject_reason", "code", "exchange_code"),
    [
        ("Cancelled", "UNKNOWN", "EC_PostOnlyWillTakeLiquidity", "POST_ONLY_WOULD_TAKE", None),
        ("Cancelled", "UNKNOWN", "EC_NoImmediateQtyToFill", "NO_IMMEDIATE_FILL", None),
        ("Cancelled", "UNKNOWN", "EC_CancelForNoFullFill", "NOT_FULLY_FILLED", None),
        ("PartiallyFilledCanceled", "", "EC_CancelForNoFullFill", "NOT_FULLY_FILLED", None),
        ("Cancelled", "CancelByUser", "EC_NoError", "CANCELLED_BY_USER", "CancelByUser"),
        ("Cancelled", "CancelByReduceOnly", "EC_NoError", "CANCELLED_REDUCE_ONLY", None),
        ("Cancelled", "CancelByPrepareLiq", "EC_NoError", "CANCELLED_LIQUIDATION", None),
        ("Cancelled", "CancelAllBeforeAdl", "EC_NoError", "CANCELLED_LIQUIDATION", None),
        ("Cancelled", "CancelBySmp", "EC_NoError", "CANCELLED_SELF_TRADE", None),
        ("Cancelled", "CancelByAdmin", "EC_NoError", "CANCELLED_BY_EXCHANGE", None),
        ("Cancelled", "CancelBySettle", "EC_NoError", "CANCELLED_BY_EXCHANGE", None),
        ("Cancelled", "CancelByNewThing", "EC_NoError", "CANCELLED_BY_EXCHANGE", None),
        ("Cancelled", "CancelByUser", "EC_Others", "CANCELLED_BY_USER", "CancelByUser"),
        ("Rejected", "UNKNOWN", "EC_Others", "EXCHANGE_REJECTED", "EC_Others"),
        ("Deactivated", "CancelByUser", "", "CANCELLED_BY_USER", None),
    ],
)
def test_reasons(
    status: str, cancel_type: str, reject_reason: str, code: str, exchange_code: str | None
) -> None:
    report = one(
        linear_order(orderStatus=status, cancelType=cancel_type, rejectReason=reject_reason)
    )
    assert report.reason is not None and report.reason.code == code
    has_reject = reject_reason not in ("", "EC_NoError")
    expected = exchange_code or (reject_reason if has_reject else cancel_type)
    assert report.reason.exchange_code == expected


def test_a_filled_order_has_no_reason_even_after_a_raced_cancel() -> None:
    raced = linear_order(cancelType="CancelByUser", rejectReason="EC_OrigClOrdIDDoesNotExist")
    assert one(raced).reason is None


def test_rebuilt_from_executions() -> None:
    first = execution_report(
        linear_execution(
            execId="e1",
            execQty="1",
            execPrice="1010",
            execValue="1010",
            execTime="1746270400000",
            leavesQty="1",
            orderQty="2",
            orderType="Limit",
            orderPrice="1100",
        )
    )
    second = execution_report(
        linear_execution(
            execId="e2",
            execQty="1",
            execPrice="1090",
            execValue="1090",
            execTime="1746270400001",
            leavesQty="0",
            orderQty="2",
            orderType="Limit",
            orderPrice="1100",
        )
    )
    order = order_from_executions([second, first])
    assert order.status is OrderStatus.FILLED and order.filled_qty == 2
    assert order.avg_price == 1050 and order.filled_value == 2100 and order.price == 1100
    assert order.fees == (Fee(D("52.745055"), "USDT"),)


# -- refusals -----------------------------------------------------------------------------------


BAD_ITEMS: list[tuple[dict[str, Any], str]] = [
    ({"createdTime": "99999999999999999999"}, "createdTime is not a time"),
    ({"createdTime": "99999999999999"}, "createdTime is out of range"),
    ({"createdTime": "-5"}, "createdTime is not a time"),
    # Issue 14: a number no clock can hold, and digits int() refuses, never reach the engine.
    ({"createdTime": 99999999999999999999}, "createdTime is not a time"),
    ({"createdTime": "\u00b2"}, "createdTime is not a time"),
    ({"updatedTime": "1" * 400}, "updatedTime is not a time"),
    ({"positionIdx": 1e30}, "positionIdx must be 0, 1 or 2"),
    ({"positionIdx": 10**30}, "positionIdx must be 0, 1 or 2"),
    ({"updatedTime": "abc"}, "updatedTime is not a time"),
    ({"updatedTime": [1]}, "updatedTime must be epoch milliseconds"),
    ({"orderId": "x" * 65}, "orderId is longer than 64"),
    ({"orderLinkId": "x" * 37}, "orderLinkId is longer than 36"),
    ({"symbol": "X" * 65}, "symbol is longer than 64"),
    ({"positionIdx": 3}, "positionIdx must be 0, 1 or 2"),
    ({"positionIdx": "one"}, "positionIdx must be 0, 1 or 2"),
    ({"positionIdx": True}, "positionIdx must be 0, 1 or 2"),
    ({"qty": "abc"}, "qty is not a number"),
    ({"qty": "-1"}, "qty must not be negative"),
    ({"qty": "NaN"}, "qty must be a finite number"),
    ({"qty": True}, "qty must be a decimal string"),
    ({"cumExecQty": "Infinity"}, "cumExecQty must be a finite number"),
    ({"side": "Hold"}, "side must be Buy or Sell"),
    ({"orderStatus": "Weird"}, "unknown orderStatus"),
    ({"orderStatus": 3}, "unknown orderStatus"),
    ({"category": "futures"}, "unknown category"),
    ({"category": 5}, "category must be a string"),
    ({"cumFeeDetail": [1]}, "cumFeeDetail must be an object"),
    ({"cumFeeDetail": {"USDT": "x"}}, "cumFeeDetail.USDT is not a number"),
    ({"reduceOnly": "yes"}, "reduceOnly must be true or false"),
    ({"orderId": "", "orderLinkId": ""}, "neither orderId nor orderLinkId"),
    ({"symbol": ""}, "symbol is required"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_ITEMS)
def test_malformed_orders_are_invalid_reports(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidReport, match=reason):
        decode_message(body(stream(linear_order(**changes))))


BAD_EXECUTIONS: list[tuple[dict[str, Any], str]] = [
    ({"execId": "x" * 97}, "execId is longer than 96"),
    ({"execQty": "0"}, "execQty must be positive"),
    ({"execQty": ""}, "execQty is required"),
    ({"execPrice": "0"}, "execPrice must be positive"),
    ({"execTime": "99999999999999999999"}, "execTime is not a time"),
    ({"execTime": ""}, "execTime is required"),
    ({"execFee": "fee"}, "execFee is not a number"),
    ({"isMaker": "false"}, "isMaker must be true or false"),
    ({"execType": 1}, "execType must be a string"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_EXECUTIONS)
def test_malformed_executions_are_invalid_reports(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidReport, match=reason):
        decode_message(body(stream(linear_execution(**changes), topic="execution")))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"nope", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON|expected a JSON object"),
        (b'{"topic": "order", "data": [{"qty": NaN}]}', "not valid JSON"),
        (b'"order"', "expected a JSON object"),
        (b"17", "expected a JSON object"),
        (b'{"topic": "wallet", "data": []}', "unsupported topic"),
        (b'{"topic": "position", "data": [{}]}', "unsupported topic"),
        (b'{"topic": "execution.fast", "data": [{}]}', "unsupported topic"),
        (b'{"topic": 5, "data": [{}]}', "topic must be a string"),
        (b'{"topic": "order"}', "message has no data"),
        (b'{"topic": "order", "data": []}', "non-empty list"),
        (b'{"topic": "order", "data": {}}', "non-empty list"),
        (b'{"topic": "order", "data": ["x"]}', "expected an object"),
        (b'{"data": []}', "data must be an object"),
        (b'{"data": {"data": {"orderStatus": "New"}}}', "an envelope inside an envelope"),
        (b'{"hello": "world"}', "neither a stream message"),
        (
            b'{"topic": "order", "data": [{"orderId": "x", "orderStatus": "New"}]}',
            "symbol is required",
        ),
        (
            b'{"topic": "order", "data": [{"orderId": "x", "symbol": "BTCUSDT", "side": "Buy",'
            b' "orderStatus": "New", "qty": "abc"}]}',
            "qty is not a number",
        ),
        (
            b'{"topic": "order", "data": [{"orderId": "x", "symbol": "BTCUSDT", "side": "Buy",'
            b' "orderStatus": "New", "qty": "1"}]}',
            "category is required",
        ),
    ],
)
def test_malformed_messages_are_invalid_reports(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidReport, match=reason):
        decode_message(raw)


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.text(max_size=30)
    | st.sampled_from(["", "0", "-1", "1e400", "NaN", "99999999999999999999", "Buy", "Filled"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(sorted(linear_order()) + sorted(linear_execution())),
    value=JSONISH,
    execution=st.booleans(),
)
def test_any_field_value_gives_reports_or_an_invalid_report(
    key: str, value: Any, execution: bool
) -> None:
    item = linear_execution() if execution else linear_order()
    item[key] = value
    topic = "execution" if execution else "order"
    try:
        reports = decode_message(body(stream(item, topic=topic)))
    except InvalidReport:
        return
    assert len(reports) == 1
