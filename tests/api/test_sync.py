"""POST /api/v1/sync on PostgreSQL: the exchange holds a fill and an order the database
missed, and a position drifted; the dry run reports, the real run fixes and publishes, the
second run finds nothing."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
from sqlmodel import select

from api.main import create_app
from om_core.db.models import Position
from om_plugins import Category, OrderRequest, OrderType, Side
from tests.api.conftest import API_ENV, READ_KEY, TRADE_KEY
from tests.flow.stack import running


async def test_sync_reports_fixes_and_then_finds_nothing(pg_url: str) -> None:
    async with running(pg_url, "memory://", env=API_ENV, consume=False) as stack:
        service = stack.service
        body = json.dumps(
            {"signal_id": "sync-1", "symbol": "BTCUSDT", "side": "buy", "qty": "0.010"}
        ).encode()
        assert (await service.signal_consumer.process_bytes(body)).status == "placed"
        await stack.paper.place_order(
            OrderRequest(
                client_order_id="by-hand",
                symbol="SOLUSDT",
                category=Category.LINEAR,
                side=Side.SELL,
                order_type=OrderType.LIMIT,
                qty=Decimal(1),
                price=Decimal(400),
            )
        )
        async with service.sessions() as session, session.begin():
            session.add(
                Position(
                    category="linear",
                    symbol="ETHUSDT",
                    size=Decimal("-2"),
                    avg_entry_price=Decimal(3000),
                )
            )
        app = create_app(service)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://om.test") as client:
            read = await client.post("/api/v1/sync", headers={"X-API-Key": READ_KEY})
            assert read.status_code == 403
            trade = {"X-API-Key": TRADE_KEY}

            placed = [e["event_type"] for e in await stack.all_events()]
            assert placed == ["order.created"]

            dry = await client.post("/api/v1/sync", params={"dry_run": "true"}, headers=trade)
            assert dry.status_code == 200, dry.text
            report = dry.json()
            assert report["dry_run"] is True
            assert (report["orders_updated"], report["orders_imported"]) == (1, 1)
            kinds = sorted(d["kind"] for d in report["drifts"])
            assert kinds == ["external_order", "order", "position", "position"]
            assert await stack.all_events() == []  # a dry run publishes nothing
            async with service.sessions() as session:
                eth = (
                    await session.exec(select(Position).where(Position.symbol == "ETHUSDT"))
                ).one()
            assert eth.size == Decimal(-2)

            real = await client.post("/api/v1/sync", headers=trade)
            fixed = real.json()
            assert (fixed["orders_updated"], fixed["orders_imported"]) == (1, 1)
            assert fixed["positions_corrected"] == 1  # ETH; BTC came right with the fill
            events = sorted(e["event_type"] for e in await stack.all_events())
            assert events == ["order.created", "order.filled", "position.corrected"]

            again = (await client.post("/api/v1/sync", headers=trade)).json()
            assert again["drifts"] == [] and again["errors"] == []
