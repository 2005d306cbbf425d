"""Fixtures: a fake Bybit server and the adapter pointed at it (pybit unmodified)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from om_plugins import (
    Category,
    ExchangeContext,
    OrderRequest,
    OrderType,
    Report,
    Side,
    TimeInForce,
)
from plugins_builtin.bybit import BybitExchange, BybitSettings
from tests.fake_bybit import FakeBybit

API_KEY = "test-key"
API_SECRET = "test-secret"


@pytest.fixture
def resent() -> set[str]:
    """Order link ids a test sends twice on purpose; any other duplicate fails the test."""
    return set()


@pytest.fixture
async def fake(resent: set[str]) -> AsyncIterator[FakeBybit]:
    # BTC for inverse margin and spot sells; Bybit's rate limits stay on.
    async with FakeBybit(
        api_key=API_KEY, api_secret=API_SECRET, coins={"BTC": Decimal("1")}
    ) as server:
        yield server
        # Orders placed by hand carry no orderLinkId; only ours must be unique.
        counts = Counter(body.get("orderLinkId") for body in server.create_calls)
        twice = {link: n for link, n in counts.items() if link and n > 1 and link not in resent}
        assert not twice, f"orders created more than once: {twice}"


def settings_for(fake: FakeBybit, **overrides: Any) -> BybitSettings:
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "api_secret": SecretStr(API_SECRET),
        "base_url": fake.http_url,
        "ws_url": fake.ws_private_url,
        "account_label": "test-account",
        "request_timeout_s": 2.0,
        "linear_settle_coins": ["USDT"],
    }
    values.update(overrides)
    return BybitSettings.model_validate(values)


async def _drop(reports: Sequence[Report]) -> None:
    """The adapter never publishes reports; Bybit's come through the WS-Gateway."""


CONTEXT = ExchangeContext(publish_reports=_drop)


@pytest.fixture
async def exchange(fake: FakeBybit) -> AsyncIterator[BybitExchange]:
    adapter = BybitExchange(settings_for(fake), CONTEXT)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.close()


def link_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def order(
    *,
    client_order_id: str | None = None,
    symbol: str = "BTCUSDT",
    category: Category = Category.LINEAR,
    side: Side = Side.BUY,
    order_type: OrderType = OrderType.MARKET,
    qty: str = "0.010",
    price: str | None = None,
    time_in_force: TimeInForce | None = None,
    reduce_only: bool = False,
    position_idx: int = 0,
) -> OrderRequest:
    return OrderRequest(
        client_order_id=client_order_id or link_id(),
        symbol=symbol,
        category=category,
        side=side,
        order_type=order_type,
        qty=Decimal(qty),
        price=Decimal(price) if price is not None else None,
        time_in_force=time_in_force,
        reduce_only=reduce_only,
        position_idx=position_idx,
    )


def limit(price: str = "50000", **kwargs: Any) -> OrderRequest:
    """A buy limit below the fake's 60000 BTCUSDT price: it rests."""
    return order(order_type=OrderType.LIMIT, price=price, **kwargs)
