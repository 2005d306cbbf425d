"""Observation 7 of issue 14: the kill switch and the age limit are the engine's, not a
plugin's courtesy. Run on PostgreSQL and RabbitMQ with the paper exchange, with ``risk`` left
out of ``OM_PLUGINS`` (the built-in risk plugin used to be the only thing enforcing them)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from om_core.db.models import Position
from om_core.orders.client_id import client_order_id
from om_core.trading_state import set_state
from om_plugins import ExchangeUnavailable, TradingState
from tests.api.conftest import KEYS, Api, api_for, signal
from tests.conftest import wait_for
from tests.plugins.distributions import install_plugin_dist

#: Everything built in but the risk plugin.
WITHOUT_RISK = {"OM_PLUGINS": "paper,order_type,sizing"}

#: A plugin that tries everything a plugin could to trade anyway: it approves every signal
#: and order, and rewrites the context it is shown (frozen, but not beyond reach) to say
#: trading is active and the position is huge.
DEFIANT = """
from decimal import Decimal
from om_plugins import Position, TradingState, hookimpl

class Defiant:
    @hookimpl(tryfirst=True)
    def om_check_signal(self, signal, context):
        object.__setattr__(context, "trading_state", TradingState.ACTIVE)
        object.__setattr__(
            context,
            "position",
            Position(category=context.position.category, symbol=signal.symbol,
                     size=Decimal(-1000) if signal.side.value == "buy" else Decimal(1000)),
        )
        return []

    @hookimpl(tryfirst=True)
    def om_check_order(self, order, signal, context):
        object.__setattr__(context, "trading_state", TradingState.ACTIVE)
        return []
"""


@pytest.fixture
async def api(server_urls: tuple[str, str]) -> AsyncIterator[Api]:
    async with api_for(*server_urls, env=WITHOUT_RISK) as value:
        yield value


async def submit(api: Api, body: dict[str, Any]) -> int:
    response = await api.client.post(
        "/api/v1/signals",
        content=json.dumps(body).encode(),
        headers={"X-API-Key": KEYS["trade"], "Content-Type": "application/json"},
    )
    return response.status_code


async def preview(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(
        "/api/v1/orders/preview",
        content=json.dumps(body).encode(),
        headers={"X-API-Key": KEYS["trade"], "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def codes(reasons: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["plugin"], r["code"]) for r in reasons]


async def position_size(api: Api) -> Decimal:
    async with api.stack.service.sessions() as session:
        rows = (await session.exec(select(Position).where(col(Position.symbol) == "BTCUSDT"))).all()
    return sum((r.size for r in rows), Decimal(0))


async def long_position(api: Api, qty: str) -> None:
    """A filled market buy of ``qty``: the position book holds a long of that size."""
    await api.stack.publish(signal("open-long", qty=qty))
    assert (await api.stack.outcome("open-long")).status == "placed"

    async def booked() -> bool:
        return await position_size(api) == Decimal(qty)

    await wait_for(booked, message=f"a long position of {qty}")


async def test_halted_places_nothing_without_the_risk_plugin_from_the_bus_or_the_api(
    api: Api,
) -> None:
    listed = (await api.get("/api/v1/plugins")).json()["plugins"]
    assert "risk" not in {p["name"] for p in listed if p["enabled"]}
    halted = await api.put("/api/v1/trading-state", {"state": "halted", "reason": "incident"})
    assert halted.status_code == 200

    await api.stack.publish(signal("halt-bus"))
    assert await submit(api, signal("halt-api")) == 202
    for signal_id in ("halt-bus", "halt-api"):
        row = await api.stack.outcome(signal_id)
        assert row.status == "rejected"
        assert codes(row.reasons) == [("engine", "TRADING_HALTED")]
        assert row.reasons[0]["details"] == {"trading_state": "halted"}
    rejected = await api.stack.events(2, types={"signal.rejected"})
    assert {e["signal_id"] for e in rejected} == {"halt-bus", "halt-api"}
    assert all(codes(e["reasons"]) == [("engine", "TRADING_HALTED")] for e in rejected)

    # The preview says the same, and the console's send goes through the same consumer.
    previewed = await preview(api, signal("halt-preview"))
    assert previewed["would_send"] is None
    assert codes(previewed["rejections"]) == [("engine", "TRADING_HALTED")]

    assert api.stack.paper.create_calls == []
    assert await api.stack.orders() == []


async def test_reducing_places_a_reducing_order_and_refuses_an_increasing_one_without_risk(
    api: Api,
) -> None:
    await long_position(api, "0.010")
    await api.put("/api/v1/trading-state", {"state": "reducing", "reason": "wind down"})
    calls = len(api.stack.paper.create_calls)

    # Growing the long, opening a short through zero: refused by the engine.
    await api.stack.publish(signal("grow", qty="0.001"))
    await api.stack.publish(signal("reverse", side="sell", qty="0.011"))
    for signal_id in ("grow", "reverse"):
        row = await api.stack.outcome(signal_id)
        assert row.status == "rejected", signal_id
        assert codes(row.reasons) == [("engine", "REDUCING_ONLY")]
        assert Decimal(row.reasons[0]["details"]["position_size"]) == Decimal("0.010")
    # Shrinking it: placed, and sent reduce-only so the exchange refuses it too once flat.
    await api.stack.publish(signal("shrink", side="sell", qty="0.004"))
    assert (await api.stack.outcome("shrink")).status == "placed"
    [order] = await api.stack.orders("shrink")
    assert order.reduce_only and order.side == "sell" and order.qty == Decimal("0.004")
    assert api.stack.paper.create_calls[calls:] == [order.client_order_id]

    async def shrunk() -> bool:
        return await position_size(api) == Decimal("0.006")

    await wait_for(shrunk, message="the long shrunk to 0.006")
    # Selling the rest is allowed too; more than the rest is not.
    too_much = await preview(api, signal("too-much", side="sell", qty="0.007"))
    assert codes(too_much["rejections"]) == [("engine", "REDUCING_ONLY")]
    rest = await preview(api, signal("rest", side="sell", qty="0.006"))
    assert rest["rejections"] == [] and rest["would_send"]["reduce_only"] is True


async def test_a_plugin_cannot_switch_the_engines_checks_off(
    server_urls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-defiant",
        entry_points={"defiant": "om_defiant_plugin:Defiant"},
        modules={"om_defiant_plugin": DEFIANT},
    )
    env = {"OM_PLUGINS": "paper,order_type,sizing,defiant"}
    async with api_for(*server_urls, env=env) as api:
        await api.put("/api/v1/trading-state", {"state": "halted", "reason": "incident"})
        await api.stack.publish(signal("defy-halt"))
        row = await api.stack.outcome("defy-halt")
        assert row.status == "rejected"
        assert codes(row.reasons) == [("engine", "TRADING_HALTED")]

        # Reducing, flat: the plugin's claim of a huge opposite position changes nothing.
        await api.put("/api/v1/trading-state", {"state": "reducing", "reason": "wind down"})
        await api.stack.publish(signal("defy-reduce", side="buy", qty="0.001"))
        row = await api.stack.outcome("defy-reduce")
        assert row.status == "rejected"
        assert codes(row.reasons) == [("engine", "REDUCING_ONLY")]
        assert api.stack.paper.create_calls == []


async def test_a_retry_is_not_sent_once_trading_is_halted(server_urls: tuple[str, str]) -> None:
    """The executor re-sends an order the exchange certainly did not get (it was unreachable):
    that is a new placement, and a halt that came meanwhile stops it. An order in doubt is
    still resolved by lookups (the other executor tests); only sending is refused."""
    async with api_for(*server_urls, env=WITHOUT_RISK) as api:
        paper = api.stack.paper
        paper.fail_next_place(
            ExchangeUnavailable("connection refused", retry_after=2.0), execute=False
        )
        await api.stack.publish(signal("retry-halted"))
        cid = client_order_id("retry-halted", 0)
        await wait_for(lambda: paper.create_calls == [cid], message="the first attempt")
        # Halted while the executor waits to try again.
        async with api.stack.service.sessions() as session, session.begin():
            await set_state(session, TradingState.HALTED, "incident", actor="test")
        row = await api.stack.outcome("retry-halted")
        assert row.status == "rejected"
        assert [r["code"] for r in row.reasons] == ["TRADING_HALTED"]
        [order] = await api.stack.orders("retry-halted")
        assert (order.status, order.reject_code) == ("rejected", "TRADING_HALTED")
        assert paper.create_calls == [cid] and cid not in paper.orders
        [event] = await api.stack.events(1, types={"order.rejected"})
        assert event["order"]["reject_code"] == "TRADING_HALTED"


async def test_one_staleness_check_with_one_code(server_urls: tuple[str, str]) -> None:
    """Signal age used to be checked twice, by the engine (SIGNAL_STALE) and by the risk
    plugin (SIGNAL_TOO_OLD). Now only the engine checks it, with or without the plugin."""
    old = (datetime.now(UTC) - timedelta(seconds=120)).isoformat()
    for env in ({}, WITHOUT_RISK):
        async with api_for(*server_urls, env=env) as api:
            await api.stack.publish(signal(f"old-{len(env)}", created_at=old))
            row = await api.stack.outcome(f"old-{len(env)}")
            assert codes(row.reasons) == [("engine", "SIGNAL_STALE")]
            assert api.stack.paper.create_calls == []
