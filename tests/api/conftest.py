"""A running service (paper exchange) with its API, reached through httpx in-process."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from om_core.db.models import Order
from tests.flow.stack import Stack, running

READ_KEY = "readkey-1234567890"
TRADE_KEY = "tradekey-1234567890"
HASHED_TRADE_KEY = "hashedkey-1234567890"
KEYS = {"read": READ_KEY, "trade": TRADE_KEY, "hashed": HASHED_TRADE_KEY}

API_ENV = {
    "OM_API_KEYS": (
        f"{READ_KEY}:read,{TRADE_KEY}:trade,"
        f"sha256:{hashlib.sha256(HASHED_TRADE_KEY.encode()).hexdigest()}:trade"
    ),
    # Snapshots are written by the tests only, never by the periodic task.
    "OM_POSITION_SNAPSHOT_INTERVAL": "0",
}


@dataclass
class Api:
    stack: Stack
    app: FastAPI
    client: httpx.AsyncClient

    async def get(self, path: str, *, key: str | None = "read", **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=_headers(key))

    async def post(self, path: str, *, key: str | None = "trade") -> httpx.Response:
        return await self.client.post(path, headers=_headers(key))

    async def put(self, path: str, body: Any, *, key: str | None = "trade") -> httpx.Response:
        return await self.client.put(path, json=body, headers=_headers(key))

    async def add(self, rows: Iterable[Any]) -> None:
        async with self.stack.service.sessions() as session, session.begin():
            session.add_all(list(rows))


def _headers(key: str | None) -> dict[str, str]:
    if key is None:
        return {}
    return {"X-API-Key": KEYS.get(key, key)}


@asynccontextmanager
async def api_for(
    db_url: str,
    broker_url: str = "memory://",
    *,
    env: Mapping[str, str] | None = None,
    plugin_config: Mapping[str, Mapping[str, Any]] | None = None,
) -> AsyncIterator[Api]:
    async with running(
        db_url, broker_url, env={**API_ENV, **(env or {})}, plugin_config=plugin_config
    ) as stack:
        app = create_app(stack.service)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://om.test") as client:
            yield Api(stack, app, client)


@pytest.fixture
async def api(pg_url: str) -> AsyncIterator[Api]:
    """The API of a service on a fresh PostgreSQL database and the in-process bus."""
    async with api_for(pg_url) as value:
        yield value


def order_row(
    created_at: datetime,
    *,
    symbol: str = "BTCUSDT",
    status: str = "new",
    side: str = "buy",
    category: str = "linear",
    signal_id: str | None = None,
    order_type: str = "limit",
    is_external: bool = False,
) -> Order:
    """An order row as the engine stores it, for tests that need many of them."""
    return Order(
        client_order_id=str(uuid.uuid4()),
        exchange_order_id=str(uuid.uuid4()),
        signal_id=signal_id,
        exchange="paper",
        category=category,
        symbol=symbol,
        side=side,
        order_type=order_type,
        time_in_force="GTC" if order_type == "limit" else "IOC",
        qty=Decimal("0.010"),
        price=Decimal("50000.5") if order_type == "limit" else None,
        status=status,
        is_external=is_external,
        created_at=created_at,
        updated_at=created_at,
    )


def signal(signal_id: str, **fields: Any) -> dict[str, Any]:
    return {"signal_id": signal_id, "symbol": "BTCUSDT", "side": "buy", "qty": "0.010", **fields}


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    code: str = body["error"]["code"]
    return code
