"""Issue 13's observations 3, 4, 6, 7, 8 and 9, each reproduced end to end: the service on
PostgreSQL + RabbitMQ trading on the fake Bybit, Bybit's private stream reaching it through the
real WS-Gateway and ``ws-gateway.order``, operators' calls through the real FastAPI app, and
every event on ``order-manager.order_events`` checked against ``docs/events.schema.json``.

(Observations 1, 2 and 5 are in ``test_end_to_end.py``; 10 in ``tests/test_architecture.py``.)

Each test waits for the reconciliation the WS-Gateway's connection triggers before it trades,
and runs without the periodic one (``OM_SYNC_INTERVAL=0``): a reconciliation that reads the
account between a fill and the fill's stream message sets the position to the exchange's
figures first, and the test would then check reconciliation instead of the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pybit.unified_trading import HTTP
from sqlmodel import col, select

from api.main import create_app
from om_core.db.models import Fill, Order, Position
from om_core.orders.client_id import client_order_id
from tests.api.conftest import API_ENV, READ_KEY, TRADE_KEY
from tests.bybit.conftest import API_KEY, API_SECRET
from tests.bybit.test_end_to_end import gateway_for
from tests.bybit.test_service import bybit_env
from tests.conftest import wait_for
from tests.fake_bybit import FakeBybit
from tests.flow.stack import Stack, running

D = Decimal


# -- the stage --------------------------------------------------------------------------------


def env_for(fake: FakeBybit, **extra: str) -> dict[str, str]:
    """The service on the fake Bybit, with API keys, and no periodic reconciliation."""
    return {**API_ENV, **bybit_env(fake, OM_SYNC_INTERVAL="0", **extra)}


@pytest.fixture
async def flat() -> AsyncIterator[FakeBybit]:
    """A Bybit account holding nothing but 100 000 USDT."""
    async with FakeBybit(api_key=API_KEY, api_secret=API_SECRET) as server:
        yield server


@asynccontextmanager
async def streaming(
    stack: Stack, fake: FakeBybit, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[None]:
    """The WS-Gateway connected, and the reconciliation its connection triggers done."""
    caplog.set_level(logging.INFO, logger="om_core.service")
    async with gateway_for(stack, fake):
        await wait_for(
            lambda: "reconciled after a stream gap" in caplog.text,
            message="the reconciliation after the gateway connected",
        )
        yield


@asynccontextmanager
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(stack.service))
    async with httpx.AsyncClient(transport=transport, base_url="http://om.test") as client:
        yield client


async def by_hand(fake: FakeBybit, **params: Any) -> str:
    """An order placed on the account by someone else (Bybit's app, another bot), with
    Bybit's own client and no ``orderLinkId``; returns Bybit's order id."""
    session = HTTP(testnet=True, api_key=API_KEY, api_secret=API_SECRET, recv_window=5000)
    session.endpoint = fake.http_url
    reply: dict[str, Any] = await asyncio.to_thread(session.place_order, **params)
    assert reply["retCode"] == 0, reply
    return str(reply["result"]["orderId"])


async def position(stack: Stack, category: str, symbol: str, idx: int = 0) -> Position | None:
    async with stack.service.sessions() as session:
        return (
            await session.exec(
                select(Position).where(
                    col(Position.category) == category,
                    col(Position.symbol) == symbol,
                    col(Position.position_idx) == idx,
                )
            )
        ).first()


async def order_by(stack: Stack, **where: str) -> Order | None:
    async with stack.service.sessions() as session:
        query = select(Order)
        for name, value in where.items():
            query = query.where(col(getattr(Order, name)) == value)
        return (await session.exec(query)).first()


async def settled(stack: Stack, status: str, **where: str) -> Order:
    """The order once it reached ``status`` and every fill it has is a real execution (no
    fill inferred from an order report is left)."""

    async def done() -> Order | None:
        order = await order_by(stack, **where)
        if order is None or order.status != status:
            return None
        fills = await fills_of(stack, order)
        if any(f.inferred for f in fills) or sum((f.qty for f in fills), D(0)) != order.filled_qty:
            return None
        return order

    return await wait_for(done, message=f"order {where} {status}, executions booked")


async def fills_of(stack: Stack, order: Order) -> list[Fill]:
    async with stack.service.sessions() as session:
        return list(
            (
                await session.exec(
                    select(Fill).where(col(Fill.order_id) == order.id).order_by(col(Fill.id))
                )
            ).all()
        )


def fees(values: Mapping[str, str]) -> dict[str, Decimal]:
    return {currency: D(amount) for currency, amount in values.items()}


async def events_of(stack: Stack, event_type: str) -> list[dict[str, Any]]:
    """Every event published so far (each validated against the schema), of one type."""
    return [e for e in await stack.all_events() if e["event_type"] == event_type]


# -- 3. quote-coin spot market buys ---------------------------------------------------------


async def test_a_quote_coin_market_buy_placed_by_hand_holds_the_coins_bought(
    flat: FakeBybit, server_urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Observation 3 of issue 13: a spot market buy placed by hand with
    ``marketUnit=quoteCoin`` (qty = 100 USDT to spend) is an external order of 100 *quote*
    units whose position is the bitcoin actually bought, less the fee Bybit took in bitcoin;
    it used to become a position of 100 BTC."""
    fake = flat
    async with running(*server_urls, env=env_for(fake)) as stack, streaming(stack, fake, caplog):
        exchange_id = await by_hand(
            fake,
            category="spot",
            symbol="BTCUSDT",
            side="Buy",
            orderType="Market",
            qty="100",
            marketUnit="quoteCoin",
        )
        order = await settled(stack, "filled", exchange_order_id=exchange_id)
        bought = fake.exchange.orders_by_id[exchange_id].cum_exec_qty  # 100 / 60000, on the grid
        assert bought == D("0.001666")
        assert order.is_external and order.signal_id is None
        assert (order.qty, order.qty_unit, order.side) == (D(100), "quote", "buy")
        assert (order.filled_qty, order.cum_exec_value) == (bought, D("99.96"))
        assert order.avg_fill_price == D(60000)
        assert fees(order.fees) == {"BTC": D("0.000001666")}  # 0.1 % of what was bought

        held = await position(stack, "spot", "BTCUSDT")
        assert held is not None
        assert held.size == fake.exchange.wallet["BTC"] == D("0.001664334")
        assert held.avg_entry_price == D(60000)
        assert fees(held.fees) == {"BTC": D("0.000001666")}
        assert held.fees_paid == D("0.09996")  # the bitcoin fee at the fill price, in USDT

        [filled] = await events_of(stack, "order.filled")
        assert filled["signal_id"] is None
        assert filled["order"]["qty"] == "100" and filled["order"]["qty_unit"] == "quote"
        assert filled["order"]["filled_qty"] == "0.001666"


# -- 4. spot buy fees in the base coin ------------------------------------------------------


async def test_spot_buy_fees_in_bitcoin_shrink_the_position_and_the_close_is_accepted(
    flat: FakeBybit, server_urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Observation 4 of issue 13: Bybit takes a spot buy's fee in the coin bought. The
    position is what the wallet holds (0.01 − 0.00001 BTC), the fee is kept in BTC and
    converted at the fill price for ``fees_paid``, and a later "close the position" signal
    sells exactly what is held, which Bybit accepts (it used to sell 0.01 BTC and be refused
    for insufficient balance)."""
    fake = flat
    async with running(*server_urls, env=env_for(fake)) as stack, streaming(stack, fake, caplog):
        await stack.publish(
            {
                "signal_id": "spot-buy",
                "category": "spot",
                "symbol": "BTCUSDT",
                "side": "buy",
                "qty": "0.01",
                "price": "59000",
            }
        )
        assert (await stack.outcome("spot-buy")).status == "placed"
        buy_link = client_order_id("spot-buy", 0)
        await stack.order_status(buy_link, "new")
        await fake.fill(buy_link)  # a maker fill at 59 000; the fee is 0.1 % in BTC
        buy = await settled(stack, "filled", client_order_id=buy_link)
        assert fees(buy.fees) == {"BTC": D("0.00001")}
        assert buy.cum_fee == D("0.59")  # in USDT: 0.00001 BTC at 59 000

        held = await position(stack, "spot", "BTCUSDT")
        assert held is not None
        assert held.size == fake.exchange.wallet["BTC"] == D("0.00999")
        assert held.avg_entry_price == D(59000)
        assert fees(held.fees) == {"BTC": D("0.00001")}
        assert held.fees_paid == D("0.59")

        await stack.publish(
            {
                "signal_id": "spot-close",
                "category": "spot",
                "symbol": "BTCUSDT",
                "side": "sell",
                "reduce_only": True,
            }
        )
        row = await stack.outcome("spot-close")
        assert row.status == "placed", row.reasons
        close = await settled(stack, "filled", client_order_id=client_order_id("spot-close", 0))
        assert close.qty == D("0.00999") and close.reject_code is None
        assert fake.create_calls[-1]["qty"] == "0.009990"  # what the wallet held, accepted
        assert fake.exchange.wallet["BTC"] == 0

        closed = await position(stack, "spot", "BTCUSDT")
        assert closed is not None and closed.size == 0
        # Bought 0.01 BTC at 59 000 (fee 0.00001 BTC = 0.59 USDT), sold the 0.00999 held at
        # 60 000 (fee 0.1 % = 0.5994 USDT): the books agree with the wallet's USDT.
        assert closed.realized_pnl == D("9.99")
        assert fees(closed.fees) == {"BTC": D("0.00001"), "USDT": D("0.5994")}
        assert closed.fees_paid == D("1.1894")
        assert closed.realized_pnl - closed.fees_paid == fake.exchange.wallet["USDT"] - 100_000

        filled = {e["signal_id"]: e for e in await events_of(stack, "order.filled")}
        assert filled["spot-buy"]["order"]["fees"] == {"BTC": "0.00001"}
        assert filled["spot-close"]["position"]["size"] == "0"


async def test_a_spot_holding_of_unknown_cost_is_not_sold_at_an_invented_profit(
    fake: FakeBybit, server_urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Observations 4 and 7 of issue 13 together: the 1 BTC the account holds at startup
    becomes the spot position through reconciliation, without an entry price (a balance does
    not say what it cost). A buy on top of it keeps the entry unknown instead of averaging
    the holding in at a price of 0 (it gave an entry of 584), and selling everything
    realizes no PnL instead of about the whole sale's value (60 000 USDT of "profit")."""
    async with running(*server_urls, env=env_for(fake)) as stack, streaming(stack, fake, caplog):
        found = await position(stack, "spot", "BTCUSDT")
        assert found is not None and (found.size, found.avg_entry_price) == (D(1), D(0))
        await stack.publish(
            {
                "signal_id": "top-up",
                "category": "spot",
                "symbol": "BTCUSDT",
                "side": "buy",
                "qty": "0.01",
                "price": "59000",
            }
        )
        assert (await stack.outcome("top-up")).status == "placed"
        link = client_order_id("top-up", 0)
        await stack.order_status(link, "new")
        await fake.fill(link)
        await settled(stack, "filled", client_order_id=link)
        held = await position(stack, "spot", "BTCUSDT")
        assert held is not None
        assert held.size == fake.exchange.wallet["BTC"] == D("1.00999")
        assert held.avg_entry_price == 0  # unknown: part of it has no known cost
        assert fees(held.fees) == {"BTC": D("0.00001")} and held.fees_paid == D("0.59")

        await stack.publish(
            {
                "signal_id": "sell-all",
                "category": "spot",
                "symbol": "BTCUSDT",
                "side": "sell",
                "reduce_only": True,
            }
        )
        assert (await stack.outcome("sell-all")).status == "placed"
        await settled(stack, "filled", client_order_id=client_order_id("sell-all", 0))
        assert fake.exchange.wallet["BTC"] == 0
        sold = await position(stack, "spot", "BTCUSDT")
        assert sold is not None and sold.size == 0
        assert sold.realized_pnl == 0
        # The fees are still what was paid: 0.1 % of 1.00999 BTC at 60 000 in USDT.
        assert fees(sold.fees) == {"BTC": D("0.00001"), "USDT": D("60.5994")}


# -- 6. inverse contracts -------------------------------------------------------------------


async def test_inverse_signals_become_contracts_valued_in_usd_with_pnl_in_bitcoin(
    fake: FakeBybit, server_urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Observation 6 of issue 13: on BTCUSD (inverse, contracts of 1 USD, settled in BTC) a
    signal for 0.01 BTC goes out as 500 contracts at 50 000 and one for 1 000 USD as 1 000
    contracts; risk values orders and positions in USD (a third for 0.05 BTC is a
    2 500 USD order over a 2 000 USD limit, and would make 4 000 USD of position, over
    3 000); the position counts contracts, its PnL and fees are in BTC."""
    env = env_for(
        fake,
        OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL="2000",
        OM_PLUGIN_RISK_MAX_POSITION_NOTIONAL="3000",
    )
    async with running(*server_urls, env=env) as stack, streaming(stack, fake, caplog):
        inverse = {"category": "inverse", "symbol": "BTCUSD", "side": "buy", "price": "50000"}
        await stack.publish({"signal_id": "inv-qty", "qty": "0.01", **inverse})
        await stack.publish({"signal_id": "inv-notional", "notional": "1000", **inverse})
        for signal_id in ("inv-qty", "inv-notional"):
            row = await stack.outcome(signal_id)
            assert row.status == "placed", row.reasons
        await stack.publish({"signal_id": "inv-big", "qty": "0.05", **inverse})
        big = await stack.outcome("inv-big")
        assert big.status == "rejected"
        actual = {r["code"]: D(r["details"]["actual"]) for r in big.reasons}
        # In USD: not 2 500 × 50 000 (contracts taken for coins), nor 0.05 (coins for USD).
        assert actual == {"MAX_ORDER_NOTIONAL": D(2500), "MAX_POSITION_NOTIONAL": D(4000)}

        sent = {c["orderLinkId"]: c for c in fake.create_calls}
        assert sent[client_order_id("inv-qty", 0)]["qty"] == "500"
        assert sent[client_order_id("inv-notional", 0)]["qty"] == "1000"
        assert len(fake.create_calls) == 2

        for signal_id in ("inv-qty", "inv-notional"):
            link = client_order_id(signal_id, 0)
            await stack.order_status(link, "new")
            await fake.fill(link)  # maker fills at 50 000
            order = await settled(stack, "filled", client_order_id=link)
            assert order.qty_unit == "contracts"
        qty_order = await order_by(stack, client_order_id=client_order_id("inv-qty", 0))
        assert qty_order is not None
        # 500 contracts of 1 USD at 50 000 are worth 0.01 BTC; the maker fee is 0.02 % of it.
        assert qty_order.cum_exec_value == D("0.01")
        assert fees(qty_order.fees) == {"BTC": D("0.000002")}

        long = await position(stack, "inverse", "BTCUSD")
        assert long is not None
        assert long.size == D(1500) == fake.exchange.positions["BTCUSD", 0].size
        assert long.avg_entry_price == D(50000)
        assert fees(long.fees) == {"BTC": D("0.000006")}
        assert long.fees_paid == D("0.000006")

        # Close at the market (60 000): PnL 1 500 × (1/50 000 − 1/60 000) = 0.005 BTC.
        await stack.publish(
            {
                "signal_id": "inv-close",
                "category": "inverse",
                "symbol": "BTCUSD",
                "side": "sell",
                "reduce_only": True,
            }
        )
        row = await stack.outcome("inv-close")
        assert row.status == "placed", row.reasons
        close = await settled(stack, "filled", client_order_id=client_order_id("inv-close", 0))
        assert close.qty == D(1500)
        flat_now = await position(stack, "inverse", "BTCUSD")
        assert flat_now is not None and flat_now.size == 0
        assert flat_now.realized_pnl == D("0.005")
        # The taker fee on 1 500 USD at 60 000 (0.025 BTC): 0.055 % = 0.00001375 BTC.
        assert fees(flat_now.fees) == {"BTC": D("0.00001975")}
        # Bybit's own figure, net of fees (its 1/60 000 does not terminate: compare to 1e-12).
        theirs = fake.exchange.positions["BTCUSD", 0].cum_realised_pnl
        ours = flat_now.realized_pnl - flat_now.fees_paid
        assert ours.quantize(D("1e-12")) == theirs.quantize(D("1e-12")) == D("0.00498025")

        filled = {e["signal_id"]: e for e in await events_of(stack, "order.filled")}
        assert filled["inv-qty"]["order"]["qty"] == "500"
        assert filled["inv-qty"]["order"]["qty_unit"] == "contracts"
        assert filled["inv-close"]["position"]["realized_pnl"] == "0.005"


# -- 7. positions reconciled with Bybit -----------------------------------------------------


async def test_positions_and_orders_opened_by_hand_appear_after_sync_in_every_category(
    fake: FakeBybit, server_urls: tuple[str, str]
) -> None:
    """Observation 7 of issue 13: positions opened by hand on the exchange (linear, inverse,
    and a spot balance) and orders resting there (one per category), while the service saw
    no stream, appear after ``POST /api/v1/sync`` with a ``position.corrected`` event each;
    the dry run before shows the same diff and changes nothing; it used to report
    ``positions_checked: 0`` and import linear orders only."""
    async with running(*server_urls, env=env_for(fake)) as stack, api(stack) as client:
        trade = {"X-API-Key": TRADE_KEY}
        # Startup reconciliation took the 1 BTC the account holds as the spot position.
        start = await position(stack, "spot", "BTCUSDT")
        assert start is not None and start.size == D(1)
        await stack.all_events()  # its position.corrected

        market = {"orderType": "Market"}
        await by_hand(fake, category="linear", symbol="ETHUSDT", side="Buy", qty="0.5", **market)
        await by_hand(fake, category="inverse", symbol="BTCUSD", side="Sell", qty="600", **market)
        await by_hand(
            fake,
            category="spot",
            symbol="BTCUSDT",
            side="Buy",
            qty="0.01",
            marketUnit="baseCoin",
            **market,
        )
        limit = {"orderType": "Limit", "side": "Buy", "price": "50000"}
        resting = {
            "spot": await by_hand(fake, category="spot", symbol="BTCUSDT", qty="0.001", **limit),
            "linear": await by_hand(
                fake,
                category="linear",
                symbol="SOLUSDT",
                side="Sell",
                orderType="Limit",
                qty="1",
                price="200",
            ),
            "inverse": await by_hand(fake, category="inverse", symbol="BTCUSD", qty="100", **limit),
        }

        dry = await client.post("/api/v1/sync", params={"dry_run": "true"}, headers=trade)
        assert dry.status_code == 200, dry.text
        report = dry.json()
        assert report["dry_run"] is True and report["errors"] == []
        assert (report["orders_imported"], report["positions_corrected"]) == (3, 3)
        assert report["positions_checked"] == 3
        assert sorted(d["key"] for d in report["drifts"] if d["kind"] == "position") == [
            "inverse:BTCUSD:0",
            "linear:ETHUSDT:0",
            "spot:BTCUSDT:0",
        ]
        assert sorted(d["key"] for d in report["drifts"] if d["kind"] == "external_order") == (
            sorted(resting.values())
        )
        # Nothing changed, nothing published.
        assert await stack.all_events() == []
        async with stack.service.sessions() as session:
            assert (await session.exec(select(Order))).all() == []
        assert await position(stack, "linear", "ETHUSDT") is None
        assert await position(stack, "inverse", "BTCUSD") is None
        spot = await position(stack, "spot", "BTCUSDT")
        assert spot is not None and spot.size == D(1)

        real = (await client.post("/api/v1/sync", headers=trade)).json()
        assert real["dry_run"] is False and real["errors"] == []
        assert real["drifts"] == report["drifts"]  # the dry run showed exactly this

        eth = await position(stack, "linear", "ETHUSDT")
        assert eth is not None and (eth.size, eth.avg_entry_price) == (D("0.5"), D(3000))
        btcusd = await position(stack, "inverse", "BTCUSD")
        assert btcusd is not None and (btcusd.size, btcusd.avg_entry_price) == (D(-600), D(60000))
        spot = await position(stack, "spot", "BTCUSDT")
        # What the wallet holds: 1 + 0.01 bought − 0.00001 (the spot fee) − 0.0000055 (the
        # inverse sell's fee: 0.055 % of 600 USD at 60 000, in BTC).
        assert spot is not None and spot.size == fake.exchange.wallet["BTC"] == D("1.0099845")
        for category, exchange_id in resting.items():
            imported = await order_by(stack, exchange_order_id=exchange_id)
            assert imported is not None, category
            assert (imported.category, imported.is_external, imported.status) == (
                category,
                True,
                "new",
            )

        events = await stack.all_events()
        created = [
            e["order"]["exchange_order_id"] for e in events if e["event_type"] == "order.created"
        ]
        assert sorted(created) == sorted(resting.values())
        corrected = {
            e["position"]["category"]: e["correction"]
            for e in events
            if e["event_type"] == "position.corrected"
        }
        assert corrected == {
            "linear": {
                "before": {"size": "0", "avg_entry_price": "0"},
                "after": {"size": "0.5", "avg_entry_price": "3000"},
                "source": "exchange",
            },
            "inverse": {
                "before": {"size": "0", "avg_entry_price": "0"},
                "after": {"size": "-600", "avg_entry_price": "60000"},
                "source": "exchange",
            },
            "spot": {
                "before": {"size": "1", "avg_entry_price": "0"},
                "after": {"size": "1.0099845", "avg_entry_price": "0"},
                "source": "exchange",
            },
        }

        again = (await client.post("/api/v1/sync", headers=trade)).json()
        assert again["drifts"] == []
        # Imported orders are looked up by the exchange's id on every later sync.
        assert again["errors"] == []


async def test_an_imported_order_cancelled_by_hand_is_cancelled_after_the_next_sync(
    fake: FakeBybit, server_urls: tuple[str, str]
) -> None:
    """Observation 7 of issue 13, one step further: an order imported by a sync is then
    cancelled by hand while the stream is down; the next sync should find it cancelled."""
    async with running(*server_urls, env=env_for(fake)) as stack, api(stack) as client:
        trade = {"X-API-Key": TRADE_KEY}
        exchange_id = await by_hand(
            fake,
            category="spot",
            symbol="BTCUSDT",
            side="Buy",
            orderType="Limit",
            qty="0.001",
            price="50000",
        )
        first = (await client.post("/api/v1/sync", headers=trade)).json()
        assert first["orders_imported"] == 1 and first["errors"] == []
        session = HTTP(testnet=True, api_key=API_KEY, api_secret=API_SECRET)
        session.endpoint = fake.http_url
        await asyncio.to_thread(
            session.cancel_order, category="spot", symbol="BTCUSDT", orderId=exchange_id
        )
        second = (await client.post("/api/v1/sync", headers=trade)).json()
        assert second["errors"] == []
        order = await order_by(stack, exchange_order_id=exchange_id)
        assert order is not None and order.status == "cancelled"


# -- 8. rejection codes ---------------------------------------------------------------------


@pytest.fixture
async def poor() -> AsyncIterator[FakeBybit]:
    """A Bybit account holding 100 USDT and nothing else."""
    async with FakeBybit(api_key=API_KEY, api_secret=API_SECRET, balance=D(100)) as server:
        yield server


async def test_insufficient_balance_is_one_code_whatever_bybit_answered(
    poor: FakeBybit, server_urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Observation 8 of issue 13: Bybit's four "insufficient funds" answers — 110007 (linear
    margin), 170131 (spot balance), 110004 and 110012 — all arrive on ``order.rejected`` as
    ``reject_code`` INSUFFICIENT_BALANCE, with Bybit's code and text beside it."""
    fake = poor
    async with running(*server_urls, env=env_for(fake)) as stack, streaming(stack, fake, caplog):
        # What the account cannot pay for: 1 200 USDT at 10x needs 120 of margin; 600 USDT.
        await stack.publish(
            {"signal_id": "nsf-linear", "symbol": "BTCUSDT", "side": "buy", "qty": "0.02"}
        )
        assert (await stack.outcome("nsf-linear")).status == "rejected"
        await stack.publish(
            {
                "signal_id": "nsf-spot",
                "category": "spot",
                "symbol": "BTCUSDT",
                "side": "buy",
                "qty": "0.01",
            }
        )
        assert (await stack.outcome("nsf-spot")).status == "rejected"
        # The two codes the fake's book-keeping does not produce, as Bybit words them.
        for code, text, signal_id in (
            (110004, "Wallet balance is insufficient", "nsf-110004"),
            (110012, "Insufficient available balance", "nsf-110012"),
        ):
            fake.reject_next_create(code, text)
            await stack.publish(
                {"signal_id": signal_id, "symbol": "ETHUSDT", "side": "buy", "qty": "0.01"}
            )
            assert (await stack.outcome(signal_id)).status == "rejected"

        rejected = {e["signal_id"]: e["order"] for e in await events_of(stack, "order.rejected")}
        expected = {
            "nsf-linear": ("110007", "ab not enough for new order"),
            "nsf-spot": ("170131", "Balance insufficient"),
            "nsf-110004": ("110004", "Wallet balance is insufficient"),
            "nsf-110012": ("110012", "Insufficient available balance"),
        }
        assert set(rejected) == set(expected)
        for signal_id, (code, text) in expected.items():
            order = rejected[signal_id]
            assert order["status"] == "rejected"
            assert order["reject_code"] == "INSUFFICIENT_BALANCE", order
            assert order["exchange_code"] == code
            assert text in order["exchange_message"]
        assert fake.orders == {}


async def test_exchange_cancel_reasons_are_carried_on_order_cancelled(
    fake: FakeBybit, server_urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Observation 8 of issue 13: a PostOnly buy above the market is cancelled by Bybit
    (``EC_PostOnlyWillTakeLiquidity``): ``order.cancelled`` says POST_ONLY_WOULD_TAKE and
    carries Bybit's reason; so do an IOC and a FOK buy below the market
    (``EC_NoImmediateQtyToFill``, ``EC_CancelForNoFullFill``). They used to be dropped."""
    async with running(*server_urls, env=env_for(fake)) as stack, streaming(stack, fake, caplog):
        cases = {
            "post-only": (
                "PostOnly",
                "61000",
                "POST_ONLY_WOULD_TAKE",
                "EC_PostOnlyWillTakeLiquidity",
            ),
            "ioc": ("IOC", "59000", "NO_IMMEDIATE_FILL", "EC_NoImmediateQtyToFill"),
            "fok": ("FOK", "59000", "NOT_FULLY_FILLED", "EC_CancelForNoFullFill"),
        }
        for signal_id, (tif, price, _, _) in cases.items():
            await stack.publish(
                {
                    "signal_id": signal_id,
                    "symbol": "BTCUSDT",
                    "side": "buy",
                    "qty": "0.01",
                    "price": price,
                    "order_type": "limit",
                    "time_in_force": tif,
                }
            )
            row = await stack.outcome(signal_id)
            assert row.status == "placed", row.reasons
        for signal_id, (_, _, reject_code, exchange_code) in cases.items():
            order = await stack.order_status(client_order_id(signal_id, 0), "cancelled")
            assert (order.reject_code, order.exchange_code) == (reject_code, exchange_code)
        cancelled = {e["signal_id"]: e["order"] for e in await events_of(stack, "order.cancelled")}
        for signal_id, (_, _, reject_code, exchange_code) in cases.items():
            assert cancelled[signal_id]["reject_code"] == reject_code
            assert cancelled[signal_id]["exchange_code"] == exchange_code
            assert cancelled[signal_id]["filled_qty"] == "0"


# -- 9. IP bans -----------------------------------------------------------------------------


PAUSED_UNTIL = "om_exchange_paused_until_timestamp_seconds"


def gauge(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_an_ip_ban_stops_requests_and_pauses_trading_with_the_reason(
    fake: FakeBybit, server_urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Observation 9 of issue 13: when Bybit answers HTTP 403 (an IP ban), the service sends
    nothing more during the ban, halts trading with the reason and the time it resumes
    (``GET /api/v1/trading-state``, a ``trading_state.changed`` event) and shows that time in
    ``/metrics``; it used to retry every second, which prolongs a ban."""
    async with (
        running(*server_urls, env=env_for(fake)) as stack,
        streaming(stack, fake, caplog),
        api(stack) as client,
    ):
        fake.ban_ip(600)
        await stack.publish(
            {
                "signal_id": "ban-1",
                "symbol": "BTCUSDT",
                "side": "buy",
                "qty": "0.01",
                "price": "50000",
            }
        )

        async def halted() -> dict[str, Any] | None:
            got = await client.get("/api/v1/trading-state", headers={"X-API-Key": READ_KEY})
            body: dict[str, Any] = got.json()
            return body if body["state"] == "halted" else None

        state = await wait_for(halted, message="trading halted")
        assert state["reason"].startswith("exchange refuses requests (403: ")
        resumes = datetime.fromisoformat(state["reason"].rsplit(" at ", 1)[1])
        # At least a minute (Bybit's bans last ten), plus up to 25 % jitter.
        assert 55 <= (resumes - datetime.now(UTC)).total_seconds() <= 76
        [changed] = await events_of(stack, "trading_state.changed")
        assert changed["trading_state"]["state"] == "halted"
        assert changed["trading_state"]["previous_state"] == "active"
        assert changed["trading_state"]["reason"] == state["reason"]
        paused = gauge((await client.get("/metrics")).text, PAUSED_UNTIL)
        assert abs(paused[("reason", "403"),] - resumes.timestamp()) <= 1

        # The first request met the ban; since then nothing has been sent. The signal is
        # held and tried again and again, each time refused before a byte leaves ...
        assert fake.banned_requests == 1
        await wait_for(
            lambda: caplog.text.count("not sent: Bybit answered HTTP 403") >= 3,
            message="the held signal tried again three times",
        )
        # ... and so is an operator's sync.
        sync = await client.post("/api/v1/sync", headers={"X-API-Key": TRADE_KEY})
        assert sync.status_code == 200
        assert sync.json()["errors"] and all("not sent" in e for e in sync.json()["errors"])
        assert fake.banned_requests == 1 and fake.create_calls == []
