"""End to end on real RabbitMQ + PostgreSQL: signal → order on (fake) Bybit → Bybit's private
stream → WS-Gateway (the Bybit plugin's) → ws-gateway.order → the adapter's decode_stream →
order state, fills, position, order.filled event; the same with the WebSocket dropped while
the fill happens, recovered by reconciliation; executions arriving newest first after their
order, with a maker rebate; a hedge-mode account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

from pydantic import SecretStr
from sqlmodel import select

from om_core.db.models import Fill, Position
from om_core.orders.client_id import client_order_id
from plugins_builtin.bybit.gateway import Gateway, GatewayConfig
from tests.bybit.conftest import API_KEY, API_SECRET
from tests.bybit.test_service import bybit_env
from tests.conftest import wait_for
from tests.fake_bybit import FakeBybit
from tests.flow.stack import Stack, running
from tests.support.gateway import bus_context


@asynccontextmanager
async def gateway_for(stack: Stack, fake: FakeBybit) -> AsyncIterator[Gateway]:
    config = GatewayConfig(
        ws_url=fake.ws_private_url,
        api_key=API_KEY,
        api_secret=SecretStr(API_SECRET),
        account="e2e",
        backoff_initial=0.1,
        backoff_max=0.5,
    )
    gateway = Gateway(config, bus_context(stack.service.bus))
    await gateway.start()
    try:
        await wait_for(lambda: fake.ws_connections == 1, message="gateway connected")
        yield gateway
    finally:
        await gateway.stop()


async def position_size(
    stack: Stack, category: str = "linear", symbol: str = "BTCUSDT", idx: int = 0
) -> Decimal | None:
    async with stack.service.sessions() as session:
        pos = (
            await session.exec(
                select(Position).where(
                    Position.category == category,
                    Position.symbol == symbol,
                    Position.position_idx == idx,
                )
            )
        ).first()
    return pos.size if pos is not None else None


async def test_signal_to_bybit_fill_to_position_and_event(
    fake: FakeBybit, server_urls: tuple[str, str]
) -> None:
    async with running(*server_urls, env=bybit_env(fake)) as stack:
        async with gateway_for(stack, fake):
            await stack.publish(
                {
                    "signal_id": "e2e-1",
                    "symbol": "BTCUSDT",
                    "side": "buy",
                    "qty": "0.010",
                    "price": "50000",
                }
            )
            assert (await stack.outcome("e2e-1")).status == "placed"
            link = client_order_id("e2e-1", 0)
            await stack.order_status(link, "new")  # Bybit's New arrived through the gateway
            await fake.fill(link)
            order = await stack.order_status(link, "filled")
            assert order.filled_qty == Decimal("0.010")
            assert await wait_for(lambda: position_size(stack)) == Decimal("0.010")
            [filled] = await stack.events(1, types={"order.filled"})
            assert filled["signal_id"] == "e2e-1"
            assert filled["position"]["size"] == "0.01"


async def test_a_fill_missed_while_the_websocket_was_down_is_recovered(
    fake: FakeBybit, server_urls: tuple[str, str]
) -> None:
    async with running(*server_urls, env=bybit_env(fake)) as stack:
        async with gateway_for(stack, fake) as gateway:
            await stack.publish(
                {
                    "signal_id": "e2e-2",
                    "symbol": "BTCUSDT",
                    "side": "sell",
                    "qty": "0.020",
                    "price": "70000",
                }
            )
            assert (await stack.outcome("e2e-2")).status == "placed"
            link = client_order_id("e2e-2", 0)
            await stack.order_status(link, "new")
            connections = gateway.connections
            await fake.drop_ws()
            await fake.fill(link)  # pushed to nobody: the socket is gone
            # The gateway reconnects and announces it; the service reconciles by REST.
            await wait_for(lambda: gateway.connections > connections, message="reconnect")
            order = await stack.order_status(link, "filled", timeout=30)
            assert order.filled_qty == Decimal("0.020")
            assert await wait_for(lambda: position_size(stack)) == Decimal("-0.020")
            [filled] = await stack.events(1, types={"order.filled"})
            assert filled["signal_id"] == "e2e-2"


async def test_executions_newest_first_after_the_order_with_a_rebate(
    fake: FakeBybit, server_urls: tuple[str, str]
) -> None:
    """Observations 1 and 2 of issue 13: a negative maker fee is booked, and two executions
    arriving newest first (after the order's Filled) give the true average, 1050."""
    fake.set_fee_rates("linear", taker=Decimal("0.00055"), maker=Decimal("-0.0001"))
    async with running(*server_urls, env=bybit_env(fake)) as stack:
        async with gateway_for(stack, fake):
            await stack.publish(
                {
                    "signal_id": "e2e-3",
                    "symbol": "ETHUSDT",
                    "side": "buy",
                    "qty": "2",
                    "price": "1100",
                }
            )
            assert (await stack.outcome("e2e-3")).status == "placed"
            link = client_order_id("e2e-3", 0)
            await stack.order_status(link, "new")
            fake.hold_executions()
            await fake.fill(link, Decimal("1"), Decimal("1010"))
            await fake.fill(link, Decimal("1"), Decimal("1090"))
            fake.release_executions(newest_first=True)
            order = await stack.order_status(link, "filled")
            assert order.filled_qty == 2 and order.avg_fill_price == Decimal("1050")

            async def fills() -> list[Fill]:
                async with stack.service.sessions() as session:
                    rows = list((await session.exec(select(Fill))).all())
                return rows if len(rows) == 2 else []

            booked = await wait_for(fills)
            assert sorted(f.price for f in booked) == [Decimal("1010"), Decimal("1090")]
            assert all(f.fee < 0 for f in booked)  # rebates
            assert await wait_for(lambda: position_size(stack, symbol="ETHUSDT")) == Decimal("2")


async def test_a_hedge_mode_account_trades(fake: FakeBybit, server_urls: tuple[str, str]) -> None:
    """Observation 5 of issue 13: on a hedge-mode account an opening buy goes out on the long
    side (positionIdx 1), and Bybit accepts it."""
    fake.set_hedge_mode(True)
    async with running(*server_urls, env=bybit_env(fake)) as stack:
        await stack.publish(
            {"signal_id": "e2e-4", "symbol": "BTCUSDT", "side": "buy", "qty": "0.010"}
        )
        row = await stack.outcome("e2e-4")
        assert row.status == "placed", row.reasons
    [body] = fake.create_calls
    assert body["positionIdx"] == 1
