from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest

from om_plugins import (
    Category,
    DuplicateClientOrderId,
    ExchangeContext,
    ExchangeRejected,
    ExecutionReport,
    OrderReport,
    OrderRequest,
    OrderType,
    OutcomeUnknown,
    ReasonCode,
    Report,
    Side,
    TimeInForce,
)
from om_plugins.reports import decode_reports, encode_reports
from plugins_builtin.paper import PaperExchange, PaperInstrument, PaperSettings
from tests.conftest import wait_for


def view(report: OrderReport) -> dict[str, Any]:
    """An order report as flat strings (Decimals in plain notation, ``""`` for none)."""

    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, Decimal):
            return format(value, "f")
        return str(value)

    fee = sum((f.amount for f in report.fees), Decimal(0))
    return {
        "exchange_order_id": report.exchange_order_id,
        "client_order_id": report.client_order_id,
        "category": report.category.value,
        "symbol": report.symbol,
        "side": report.side.value,
        "order_type": text(report.order_type),
        "time_in_force": text(report.time_in_force),
        "status": report.status.value,
        "qty": text(report.qty),
        "price": text(report.price),
        "filled_qty": text(report.filled_qty),
        "filled_value": text(report.filled_value),
        "avg_price": text(report.avg_price),
        "fee": text(fee),
        "fees": {f.currency: text(f.amount) for f in report.fees},
        "leaves_qty": text(report.leaves_qty),
        "reason": report.reason.code if report.reason is not None else "",
    }


class Published:
    """Collects what the exchange publishes, the way ``ws-gateway.order`` would receive it."""

    def __init__(self) -> None:
        self.messages: list[list[Report]] = []
        self.fail = False

    async def __call__(self, reports: Sequence[Report]) -> None:
        if self.fail:
            raise ConnectionError("broker is down")
        # What travels is the neutral JSON form: it must survive the trip unchanged.
        assert decode_reports(encode_reports(reports)) == list(reports)
        self.messages.append(list(reports))

    def reports(self, client_order_id: str | None = None) -> list[OrderReport]:
        found = [r for m in self.messages for r in m if isinstance(r, OrderReport)]
        if client_order_id is not None:
            found = [r for r in found if r.client_order_id == client_order_id]
        return found

    def items(self, client_order_id: str | None = None) -> list[dict[str, Any]]:
        return [view(r) for r in self.reports(client_order_id)]

    def executions(self, client_order_id: str) -> list[ExecutionReport]:
        return [
            r
            for m in self.messages
            for r in m
            if isinstance(r, ExecutionReport) and r.client_order_id == client_order_id
        ]

    def statuses(self, client_order_id: str) -> list[str]:
        return [i["status"] for i in self.items(client_order_id)]


QUIET = {"random_walk": False}


def paper(published: Published, **settings: Any) -> PaperExchange:
    return PaperExchange(
        PaperSettings.model_validate({**QUIET, **settings}),
        ExchangeContext(publish_reports=published),
    )


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
async def exchange(published: Published) -> AsyncIterator[PaperExchange]:
    ex = paper(published)
    await ex.start()
    try:
        yield ex
    finally:
        await ex.close()


def order(
    cid: str = "cid-1",
    *,
    side: Side = Side.BUY,
    qty: str = "0.010",
    price: str | None = None,
    symbol: str = "BTCUSDT",
    tif: TimeInForce | None = None,
    reduce_only: bool = False,
    category: Category = Category.LINEAR,
) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol=symbol,
        category=category,
        side=side,
        order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
        qty=Decimal(qty),
        price=Decimal(price) if price is not None else None,
        time_in_force=tif,
        reduce_only=reduce_only,
    )


def last_order(message: Sequence[Report]) -> dict[str, Any]:
    """The order report a message ends with (executions come first), as a view."""
    report = message[-1]
    assert isinstance(report, OrderReport)
    uuid.UUID(report.exchange_order_id)
    assert report.created_at is not None and report.updated_at is not None
    assert report.updated_at >= report.created_at
    return view(report)


def num(item: Mapping[str, Any], key: str) -> Decimal:
    return Decimal(item[key])


# -- market orders ---------------------------------------------------------------------------


async def test_market_buy_fills_at_once_and_publishes_an_exact_filled_message(
    exchange: PaperExchange, published: Published
) -> None:
    placed = await exchange.place_order(order("buy-1"))

    assert placed.client_order_id == "buy-1"
    assert len(published.messages) == 1
    item = last_order(published.messages[0])
    # 60000 + 5 bps = 60030.0; value 0.010 × 60030 = 600.3; fee 600.3 × 0.00055 = 0.330165
    assert item["exchange_order_id"] == placed.exchange_order_id
    assert item["client_order_id"] == "buy-1"
    assert item["status"] == "filled"
    assert (item["side"], item["order_type"], item["time_in_force"]) == ("buy", "market", "IOC")
    assert item["category"] == "linear" and item["symbol"] == "BTCUSDT"
    assert item["qty"] == "0.010"
    assert num(item, "filled_qty") == Decimal("0.010")
    assert num(item, "avg_price") == Decimal("60030")
    assert num(item, "filled_value") == Decimal("600.3")
    assert num(item, "fee") == Decimal("0.330165")
    assert item["fees"] == {"USDT": item["fee"]}
    assert num(item, "leaves_qty") == 0
    assert item["price"] == ""
    assert item["reason"] == ""

    assert exchange.wallet_balance == Decimal(100_000) - Decimal("0.330165")
    assert exchange.position("BTCUSDT").size == Decimal("0.010")


async def test_market_sell_gets_less_than_the_price(
    exchange: PaperExchange, published: Published
) -> None:
    await exchange.place_order(order("sell-1", side=Side.SELL))
    item = published.items("sell-1")[-1]
    assert num(item, "avg_price") == Decimal("59970")
    assert exchange.position("BTCUSDT").size == Decimal("-0.010")


@pytest.mark.parametrize(("side", "expected"), [(Side.BUY, "60031.4"), (Side.SELL, "59971.2")])
async def test_slippage_is_rounded_to_the_tick_against_the_trader(
    exchange: PaperExchange, published: Published, side: Side, expected: str
) -> None:
    # 60001.3 × 1.0005 = 60031.30065 → up; 60001.3 × 0.9995 = 59971.29935 → down
    await exchange.set_price("BTCUSDT", Decimal("60001.3"))
    await exchange.place_order(order("o", side=side))
    assert num(published.items("o")[-1], "avg_price") == Decimal(expected)


async def test_get_order_reports_the_same_numbers_as_the_stream(
    exchange: PaperExchange, published: Published
) -> None:
    await exchange.place_order(order("buy-1"))
    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", "buy-1")
    assert found is not None
    assert found.status == "filled"
    assert found.filled_qty == Decimal("0.010")
    assert found.avg_price == Decimal("60030")
    assert found.filled_value == Decimal("600.3")
    assert [(f.amount, f.currency) for f in found.fees] == [(Decimal("0.330165"), "USDT")]
    assert found.price is None
    assert found.created_at is not None and found.created_at.tzinfo is not None
    assert found == published.reports("buy-1")[-1]
    assert await exchange.get_order(Category.LINEAR, "BTCUSDT", "never-sent") is None
    assert await exchange.get_order(Category.LINEAR, "ETHUSDT", "buy-1") is None


async def test_closing_a_position_realises_pnl_into_the_wallet(
    exchange: PaperExchange, published: Published
) -> None:
    await exchange.place_order(order("open"))  # buys 0.010 at 60030.0
    await exchange.set_price("BTCUSDT", Decimal(61000))
    await exchange.place_order(order("close", side=Side.SELL))  # sells at 60969.5
    assert exchange.orders["close"].closed_pnl == Decimal("9.395")  # (60969.5 − 60030) × 0.010
    fees = Decimal("0.330165") + Decimal("609.695") * Decimal("0.00055")
    assert exchange.wallet_balance == Decimal(100_000) + Decimal("9.395") - fees
    assert exchange.position("BTCUSDT").size == 0
    balance = await exchange.get_balance("USDT")
    assert balance.equity == exchange.wallet_balance == balance.available


# -- limit orders ----------------------------------------------------------------------------


async def test_limit_order_rests_then_fills_when_the_price_crosses(
    exchange: PaperExchange, published: Published
) -> None:
    await exchange.place_order(order("bid", price="59000.00"))
    new = last_order(published.messages[-1])
    assert new["status"] == "new"
    assert (new["price"], new["leaves_qty"], new["filled_qty"]) == ("59000.00", "0.010", "0")
    assert new["avg_price"] == ""
    assert [o.client_order_id for o in await exchange.list_open_orders(Category.LINEAR)] == ["bid"]

    await exchange.set_price("BTCUSDT", Decimal("59000.1"))
    assert published.statuses("bid") == ["new"]

    await exchange.set_price("BTCUSDT", Decimal("58990"))
    filled = last_order(published.messages[-1])
    assert filled["status"] == "filled"
    assert filled["exchange_order_id"] == new["exchange_order_id"]
    # Fills at its own limit, as a maker: 590 × 0.0002 = 0.118
    assert num(filled, "avg_price") == Decimal(59000)
    assert num(filled, "filled_value") == Decimal(590)
    assert num(filled, "fee") == Decimal("0.118")
    assert num(filled, "leaves_qty") == 0
    assert await exchange.list_open_orders(Category.LINEAR) == []
    assert exchange.position("BTCUSDT").size == Decimal("0.010")


async def test_sell_limit_fills_when_the_price_rises_to_it(
    exchange: PaperExchange, published: Published
) -> None:
    await exchange.place_order(order("ask", side=Side.SELL, price="61000.00"))
    await exchange.set_price("BTCUSDT", Decimal("61000.00"))
    assert published.statuses("ask") == ["new", "filled"]


async def test_marketable_limit_fills_at_once_never_worse_than_its_limit(
    exchange: PaperExchange, published: Published
) -> None:
    # The slipped price would be 60030.0; the limit caps it at 60010.0, taker fee.
    await exchange.place_order(order("cross", price="60010.00"))
    item = published.items("cross")[-1]
    assert published.statuses("cross") == ["filled"]
    assert num(item, "avg_price") == Decimal("60010")
    assert num(item, "fee") == Decimal("600.1") * Decimal("0.00055")


async def test_post_only_limit_that_would_cross_is_cancelled(
    exchange: PaperExchange, published: Published
) -> None:
    await exchange.place_order(order("po", price="60100", tif=TimeInForce.POST_ONLY))
    item = published.items("po")[-1]
    assert item["status"] == "cancelled"
    assert item["reason"] == "POST_ONLY_WOULD_TAKE"
    assert num(item, "filled_qty") == 0
    assert exchange.position("BTCUSDT").size == 0


async def test_ioc_limit_that_cannot_fill_is_cancelled(
    exchange: PaperExchange, published: Published
) -> None:
    await exchange.place_order(order("ioc", price="59000", tif=TimeInForce.IOC))
    assert published.statuses("ioc") == ["cancelled"]
    assert await exchange.list_open_orders(Category.LINEAR) == []


async def test_cancel_a_resting_order(exchange: PaperExchange, published: Published) -> None:
    await exchange.place_order(order("bid", price="59000"))
    await exchange.cancel_order(Category.LINEAR, "BTCUSDT", "bid")

    item = last_order(published.messages[-1])
    assert published.statuses("bid") == ["new", "cancelled"]
    assert item["reason"] == "CANCELLED_BY_USER"
    assert num(item, "leaves_qty") == 0 and num(item, "filled_qty") == 0
    # A cancelled order never fills, and cannot be cancelled twice.
    await exchange.set_price("BTCUSDT", Decimal(58000))
    assert published.statuses("bid") == ["new", "cancelled"]
    assert exchange.position("BTCUSDT").size == 0
    with pytest.raises(ExchangeRejected) as twice:
        await exchange.cancel_order(Category.LINEAR, "BTCUSDT", "bid")
    assert twice.value.code == "110001"
    with pytest.raises(ExchangeRejected) as unknown:
        await exchange.cancel_order(Category.LINEAR, "BTCUSDT", "nope")
    assert unknown.value.code == "110001"


async def test_list_open_orders_newest_first_and_by_symbol(exchange: PaperExchange) -> None:
    await exchange.place_order(order("a", price="59000"))
    await exchange.place_order(order("b", symbol="ETHUSDT", qty="0.10", price="2900"))
    await exchange.place_order(order("c", price="58000"))
    every = await exchange.list_open_orders(Category.LINEAR)
    assert [o.client_order_id for o in every] == ["c", "b", "a"]
    btc = await exchange.list_open_orders(Category.LINEAR, "BTCUSDT")
    assert [o.client_order_id for o in btc] == ["c", "a"]
    assert all(o.status == "new" and o.filled_qty == 0 for o in every)


# -- partial fills ---------------------------------------------------------------------------


THIN_BTC = PaperInstrument(
    tick_size=Decimal("0.10"),
    qty_step=Decimal("0.001"),
    min_qty=Decimal("0.001"),
    max_qty=Decimal("100"),
    min_notional=Decimal("5"),
    max_fill_qty=Decimal("0.010"),
)


async def test_thin_liquidity_fills_a_resting_order_in_parts(published: Published) -> None:
    exchange = paper(published, instruments={"BTCUSDT": THIN_BTC})
    await exchange.place_order(order("bid", qty="0.025", price="59000"))
    for _ in range(3):
        await exchange.set_price("BTCUSDT", Decimal(58900))

    items = published.items("bid")
    assert [i["status"] for i in items] == [
        "new",
        "partially_filled",
        "partially_filled",
        "filled",
    ]
    assert [num(i, "filled_qty") for i in items] == [
        0,
        Decimal("0.010"),
        Decimal("0.020"),
        Decimal("0.025"),
    ]
    assert [num(i, "leaves_qty") for i in items] == [
        Decimal("0.025"),
        Decimal("0.015"),
        Decimal("0.005"),
        0,
    ]
    assert num(items[-1], "filled_value") == Decimal("1475")
    assert num(items[-1], "fee") == Decimal("0.295")
    # Each step's execution comes before the order report it changed, at the limit price.
    assert [(e.qty, e.price, e.is_maker) for e in published.executions("bid")] == [
        (Decimal("0.010"), Decimal(59000), True),
        (Decimal("0.010"), Decimal(59000), True),
        (Decimal("0.005"), Decimal(59000), True),
    ]


async def test_thin_liquidity_cancels_the_rest_of_a_market_order(published: Published) -> None:
    exchange = paper(published, instruments={"BTCUSDT": THIN_BTC})
    await exchange.place_order(order("mkt", qty="0.025"))
    item = published.items("mkt")[-1]
    assert published.statuses("mkt") == ["cancelled"]
    assert item["reason"] == "NOT_FULLY_FILLED"
    assert num(item, "filled_qty") == Decimal("0.010")
    assert exchange.position("BTCUSDT").size == Decimal("0.010")


# -- exactly once ----------------------------------------------------------------------------


async def test_duplicate_client_order_id_raises_and_places_nothing_more(
    exchange: PaperExchange, published: Published
) -> None:
    await exchange.place_order(order("dup", price="59000"))
    with pytest.raises(DuplicateClientOrderId) as raised:
        await exchange.place_order(order("dup", price="59000"))

    assert raised.value.code == "110072"
    assert exchange.create_calls == ["dup", "dup"]
    assert list(exchange.orders) == ["dup"]
    assert published.statuses("dup") == ["new"]
    assert len(await exchange.list_open_orders(Category.LINEAR)) == 1


async def test_timeout_after_executing_leaves_exactly_one_order(
    exchange: PaperExchange, published: Published
) -> None:
    exchange.fail_next_place(OutcomeUnknown("read timed out"), execute=True)
    with pytest.raises(OutcomeUnknown):
        await exchange.place_order(order("lost-ack"))

    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", "lost-ack")
    assert found is not None and found.status == "filled"
    # What the engine does next: send it again, learn it exists, look it up.
    with pytest.raises(DuplicateClientOrderId):
        await exchange.place_order(order("lost-ack"))
    assert exchange.create_calls == ["lost-ack", "lost-ack"]
    assert list(exchange.orders) == ["lost-ack"]
    assert published.statuses("lost-ack") == ["filled"]
    assert exchange.position("BTCUSDT").size == Decimal("0.010")


async def test_failure_before_executing_places_nothing(
    exchange: PaperExchange, published: Published
) -> None:
    exchange.fail_next_place(OutcomeUnknown("connection reset"), execute=False)
    with pytest.raises(OutcomeUnknown):
        await exchange.place_order(order("never"))
    assert await exchange.get_order(Category.LINEAR, "BTCUSDT", "never") is None
    assert exchange.orders == {} and published.messages == []

    # The switch applies once: the retry goes through.
    await exchange.place_order(order("never"))
    assert exchange.create_calls == ["never", "never"]
    assert published.statuses("never") == ["filled"]


async def test_reject_after_accepting_publishes_rejected(
    exchange: PaperExchange, published: Published
) -> None:
    exchange.reject_next_order("EC_InsufficientMargin", ReasonCode.INSUFFICIENT_BALANCE)
    placed = await exchange.place_order(order("r"))
    item = published.items("r")[-1]
    assert item["status"] == "rejected"
    assert item["reason"] == "INSUFFICIENT_BALANCE"
    assert item["exchange_order_id"] == placed.exchange_order_id
    assert num(item, "filled_qty") == 0 and num(item, "leaves_qty") == 0
    assert exchange.position("BTCUSDT").size == 0
    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", "r")
    assert found is not None and found.reason is not None
    assert (found.reason.code, found.reason.exchange_code) == (
        "INSUFFICIENT_BALANCE",
        "EC_InsufficientMargin",
    )


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (order(symbol="DOGEUSDT"), "10001"),
        (order(category=Category.SPOT), "10001"),
        (order(qty="0.0105"), "10001"),  # not on qty_step
        (order(qty="0"), "10001"),
        (order(qty="0.0001"), "10001"),  # below min qty (and off the grid)
        (order(qty="501"), "10001"),  # above max market qty
        (order(qty="1191", price="50000"), "10001"),  # above max qty
        (order(price="60000.05"), "10001"),  # not on tick
        (order(cid="has space"), "10001"),
        (order(cid="x" * 37), "10001"),
        (order(qty="0.001", price="4000"), "110094"),  # 4 USDT < min notional 5
        (order(qty="0.001", price="2000000.00"), "110003"),  # above max price
        (order(side=Side.SELL, reduce_only=True), "110017"),  # nothing to reduce
    ],
)
async def test_invalid_orders_are_rejected_like_bybit(
    exchange: PaperExchange, published: Published, request_: OrderRequest, code: str
) -> None:
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.place_order(request_)
    assert raised.value.code == code
    assert raised.value.message
    assert exchange.create_calls == [request_.client_order_id]
    assert exchange.orders == {}
    assert published.messages == []


async def test_limit_order_without_price_is_rejected(exchange: PaperExchange) -> None:
    request = OrderRequest(
        client_order_id="no-price",
        symbol="BTCUSDT",
        category=Category.LINEAR,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        qty=Decimal("0.010"),
    )
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.place_order(request)
    assert raised.value.code == "10001"


async def test_order_beyond_the_margin_is_rejected(published: Published) -> None:
    exchange = paper(published, initial_balance="100")
    # 0.02 BTC × 60000 / 10x leverage = 120 USDT of margin > 100
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.place_order(order(qty="0.020"))
    assert raised.value.code == "110007"
    await exchange.place_order(order("fits", qty="0.010"))
    assert published.statuses("fits") == ["filled"]


async def test_reduce_only_never_flips_the_position(
    exchange: PaperExchange, published: Published
) -> None:
    await exchange.place_order(order("open", qty="0.010"))
    await exchange.place_order(order("close", side=Side.SELL, qty="0.020", reduce_only=True))
    item = published.items("close")[-1]
    assert item["status"] == "cancelled"
    assert item["reason"] == "CANCELLED_REDUCE_ONLY"
    assert num(item, "filled_qty") == Decimal("0.010")
    assert exchange.position("BTCUSDT").size == 0


async def test_instrument_rules_and_reference_price(exchange: PaperExchange) -> None:
    btc = await exchange.get_instrument(Category.LINEAR, "BTCUSDT")
    # As in Bybit's instruments-info example for BTCUSDT.
    assert (btc.tick_size, btc.qty_step, btc.min_qty) == (
        Decimal("0.10"),
        Decimal("0.001"),
        Decimal("0.001"),
    )
    assert (btc.max_qty, btc.max_market_qty, btc.min_notional) == (
        Decimal(1190),
        Decimal(500),
        Decimal(5),
    )
    assert (btc.base_coin, btc.quote_coin) == ("BTC", "USDT")
    assert await exchange.get_reference_price(Category.LINEAR, "ETHUSDT") == Decimal(3000)
    assert await exchange.get_reference_price(Category.LINEAR, "SOLUSDT") == Decimal(150)
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.get_instrument(Category.LINEAR, "DOGEUSDT")
    assert raised.value.code == "10001"
    with pytest.raises(ExchangeRejected):
        await exchange.get_instrument(Category.SPOT, "BTCUSDT")


async def test_starting_balance(exchange: PaperExchange) -> None:
    usdt = await exchange.get_balance("USDT")
    assert usdt.available == usdt.equity == Decimal(100_000)
    assert (await exchange.get_balance("BTC")).equity == 0


async def test_resting_orders_hold_margin(exchange: PaperExchange) -> None:
    await exchange.place_order(order("bid", qty="1.000", price="50000"))
    usdt = await exchange.get_balance("USDT")
    assert usdt.equity == Decimal(100_000)
    assert usdt.available == Decimal(95_000)


# -- publishing ------------------------------------------------------------------------------


async def test_a_failing_publisher_does_not_corrupt_the_exchange(
    exchange: PaperExchange, published: Published, caplog: pytest.LogCaptureFixture
) -> None:
    published.fail = True
    with caplog.at_level(logging.ERROR):
        placed = await exchange.place_order(order("unseen"))
    assert "unseen" in caplog.text
    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", "unseen")
    assert found is not None and found.exchange_order_id == placed.exchange_order_id
    assert found.status == "filled"

    published.fail = False
    await exchange.place_order(order("seen", price="59000"))
    assert published.statuses("seen") == ["new"]
    assert published.statuses("unseen") == []


async def test_a_publisher_that_calls_back_keeps_updates_in_order() -> None:
    # A consumer reacting inside publish (cancelling on "new") must neither deadlock nor see
    # the Cancelled update before the New one.
    seen: list[str] = []
    holder: dict[str, PaperExchange] = {}

    async def publish(reports: Sequence[Report]) -> None:
        item = reports[-1]
        assert isinstance(item, OrderReport)
        seen.append(item.status.value)
        if item.status == "new":
            await holder["ex"].cancel_order(Category.LINEAR, "BTCUSDT", item.client_order_id)

    ex = PaperExchange(PaperSettings(random_walk=False), ExchangeContext(publish))
    holder["ex"] = ex
    await asyncio.wait_for(ex.place_order(order("bid", price="59000")), timeout=5)
    assert seen == ["new", "cancelled"]


async def test_changes_queued_behind_a_slow_publish_go_out_together_in_order() -> None:
    # While one message awaits its confirm, later changes queue; they travel in one message,
    # as Bybit pushes several orders at once, and never ahead of what happened before them.
    messages: list[list[OrderReport]] = []
    first_sent = asyncio.Event()
    release = asyncio.Event()

    async def publish(reports: Sequence[Report]) -> None:
        messages.append([r for r in reports if isinstance(r, OrderReport)])
        first_sent.set()
        await release.wait()

    ex = PaperExchange(PaperSettings(random_walk=False), ExchangeContext(publish))
    first = asyncio.create_task(ex.place_order(order("a")))
    await asyncio.wait_for(first_sent.wait(), timeout=5)
    rest = [asyncio.create_task(ex.place_order(order(cid))) for cid in ("b", "c", "d")]
    # Placing does not wait for the stream: the others are accepted while "a" is in flight.
    await asyncio.wait_for(asyncio.gather(*rest), timeout=5)
    release.set()
    await asyncio.wait_for(first, timeout=5)
    await asyncio.wait_for(ex.close(), timeout=5)

    assert [len(m) for m in messages] == [1, 3]
    assert [r.client_order_id for m in messages for r in m] == ["a", "b", "c", "d"]
    assert all(r.status == "filled" for m in messages for r in m)


# -- price walk ------------------------------------------------------------------------------


async def test_price_walk_moves_prices_and_stops_on_close(published: Published) -> None:
    exchange = paper(published, random_walk=True, walk_interval_seconds="0.01", walk_step_bps="50")
    await exchange.start()
    try:

        async def moved() -> bool:
            price = await exchange.get_reference_price(Category.LINEAR, "BTCUSDT")
            return price != Decimal(60000)

        await wait_for(moved, timeout=5, message="the BTCUSDT price to move")
        price = await exchange.get_reference_price(Category.LINEAR, "BTCUSDT")
        assert price % Decimal("0.10") == 0
        assert walk_tasks() == 1
    finally:
        await exchange.close()
    assert walk_tasks() == 0


def walk_tasks() -> int:
    return sum(1 for t in asyncio.all_tasks() if t.get_name() == "paper-price-walk")


async def test_price_walk_is_reproducible_from_its_seed() -> None:
    from plugins_builtin.paper.market import PriceWalk

    def run(seed: int) -> list[Decimal]:
        walk, price, out = PriceWalk(Decimal(10), seed), Decimal(60000), []
        for _ in range(50):
            price = walk.next_price(price, Decimal("0.10"))
            out.append(price)
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert all(p % Decimal("0.10") == 0 for p in run(7))


async def test_set_price_refuses_nonsense(exchange: PaperExchange) -> None:
    with pytest.raises(KeyError):
        await exchange.set_price("DOGEUSDT", Decimal(1))
    with pytest.raises(ValueError):
        await exchange.set_price("BTCUSDT", Decimal(0))
