"""The paper exchange passes the exchange-adapter contract (om_plugins.testing.exchange_contract)
that every exchange plugin runs against its own adapter; its stream is what it publishes
through ``ExchangeContext.publish_reports``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest

from om_plugins import Category, ExchangeContext, OutcomeUnknown
from om_plugins.testing.exchange_contract import (
    ContractSubject,
    ExchangeContract,
    ReportsCapture,
    SubjectFactory,
)
from plugins_builtin.paper import PaperExchange, PaperSettings


class PaperVenue:
    """The contract's venue driver over the paper exchange's own controls."""

    def __init__(self, exchange: PaperExchange, capture: ReportsCapture) -> None:
        self.exchange = exchange
        self.capture = capture

    async def set_price(self, category: Category, symbol: str, price: Decimal) -> None:
        await self.exchange.set_price(symbol, price)

    async def fill(
        self, category: Category, symbol: str, client_order_id: str, qty: Decimal | None = None
    ) -> None:
        await self.exchange.fill(client_order_id, qty)

    async def lose_next_create_answer(self, *, executed: bool) -> None:
        self.exchange.fail_next_place(OutcomeUnknown("the answer was lost"), execute=executed)

    def create_requests(self, client_order_id: str) -> int:
        return self.exchange.create_calls.count(client_order_id)

    async def stream_messages(self) -> list[bytes]:
        return await self.capture.drain()

    async def interrupt_stream(self) -> None:
        # In-process: there is no connection to break, so the gap is announced directly.
        self.capture.gap()


class TestPaperContract(ExchangeContract):
    @pytest.fixture
    def exchange_subject(self) -> SubjectFactory:
        @asynccontextmanager
        async def open_subject() -> AsyncIterator[ContractSubject]:
            capture = ReportsCapture()
            exchange = PaperExchange(
                PaperSettings(random_walk=False), ExchangeContext(publish_reports=capture.publish)
            )
            await exchange.start()
            try:
                yield ContractSubject(adapter=exchange, venue=PaperVenue(exchange, capture))
            finally:
                await exchange.close()

        return open_subject
