"""The Bybit adapter passes the exchange-adapter contract (om_plugins.testing.exchange_contract)
against the fake Bybit, in linear, inverse and spot; the stream is the real WS-Gateway's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest

from om_plugins import Category
from om_plugins.testing.exchange_contract import (
    ContractSubject,
    ExchangeContract,
    GatewayCapture,
    SubjectFactory,
)
from plugins_builtin.bybit import BybitExchange, BybitPlugin
from plugins_builtin.bybit.gateway import Gateway
from tests.bybit.conftest import API_KEY, API_SECRET, CONTEXT, settings_for
from tests.conftest import wait_for
from tests.fake_bybit import FakeBybit

SYMBOLS = {Category.LINEAR: "BTCUSDT", Category.INVERSE: "BTCUSD", Category.SPOT: "BTCUSDT"}


class BybitVenue:
    """The contract's venue driver over the fake Bybit and the gateway streaming it."""

    def __init__(self, fake: FakeBybit, capture: GatewayCapture, gateway: Gateway) -> None:
        self.fake = fake
        self.capture = capture
        self.gateway = gateway

    async def set_price(self, category: Category, symbol: str, price: Decimal) -> None:
        await self.fake.set_price(symbol, price)

    async def fill(
        self, category: Category, symbol: str, client_order_id: str, qty: Decimal | None = None
    ) -> None:
        await self.fake.fill(client_order_id, qty)

    async def lose_next_create_answer(self, *, executed: bool) -> None:
        # Held for longer than the adapter's request timeout (1 s), then closed unanswered.
        self.fake.timeout_next_create(execute=executed, delay=3.0, close=True)

    def create_requests(self, client_order_id: str) -> int:
        return sum(1 for c in self.fake.create_calls if c.get("orderLinkId") == client_order_id)

    async def stream_messages(self) -> list[bytes]:
        return await self.capture.drain()

    async def interrupt_stream(self) -> None:
        connections = self.gateway.connections
        await self.fake.drop_ws()
        await wait_for(lambda: self.gateway.connections > connections, message="a reconnection")


class TestBybitContract(ExchangeContract):
    @pytest.fixture(params=[Category.LINEAR, Category.INVERSE, Category.SPOT], ids=str)
    def exchange_subject(self, request: pytest.FixtureRequest) -> SubjectFactory:
        category: Category = request.param

        @asynccontextmanager
        async def open_subject() -> AsyncIterator[ContractSubject]:
            async with FakeBybit(
                api_key=API_KEY, api_secret=API_SECRET, coins={"BTC": Decimal("1")}
            ) as fake:
                settings = settings_for(
                    fake, request_timeout_s=1.0, ws_reconnect_initial_s=0.1, ws_reconnect_max_s=0.5
                )
                capture = GatewayCapture()
                gateway = BybitPlugin(settings=settings).create_gateway(capture.context)
                await gateway.start()
                adapter = BybitExchange(settings, CONTEXT)
                await adapter.start()
                try:
                    await wait_for(lambda: gateway.connections == 1, message="the gateway")
                    yield ContractSubject(
                        adapter=adapter,
                        venue=BybitVenue(fake, capture, gateway),
                        category=category,
                        symbol=SYMBOLS[category],
                    )
                finally:
                    await adapter.close()
                    await gateway.stop()

        return open_subject
