"""Scenario 3: the service is cut off RabbitMQ, and later off PostgreSQL, under load.

Signals keep arriving at the broker the whole time (the test publishes over its own
connection), and the WS-Gateway keeps streaming fills into ``ws-gateway.order``. While
RabbitMQ is unreachable the service can neither take signals nor publish events; while
PostgreSQL is unreachable it holds what it took. Afterwards: every signal placed once, one
order each on the exchange, every event delivered (at-least-once, de-duplicated by
event_id), fills and positions equal to the exchange's.

An operator also changes the trading state while the broker is down: those events are
committed then, so the relay certainly tries to publish while it cannot, and its publishes
time out (the service's publish timeout is shorter than the outage) — they must still
arrive afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from urllib.parse import urlsplit

import pytest
from sqlmodel import col, select

from om_core.db.models import OutboxEvent
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.orders.client_id import client_order_id
from om_core.trading_state import set_state
from om_plugins.types import TradingState
from plugins_builtin.bybit.gateway import Gateway
from tests.faults.conftest import World
from tests.faults.support import audit, await_true, bybit_env, encode, market_signal
from tests.flow.stack import Stack, running
from tests.support.tcp_proxy import TcpProxy

SIGNALS = 60
#: Seconds between two signals: the stream spans both outages.
PACE = 0.1
OUTAGE = 3.0


@pytest.fixture
async def proxies() -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    amqp, pg = TcpProxy("127.0.0.1", 5672), TcpProxy("127.0.0.1", 5432)
    await amqp.start()
    await pg.start()
    try:
        yield amqp, pg
    finally:
        await amqp.stop()
        await pg.stop()


def through(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    return url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}", 1)


async def test_broker_then_database_outage_under_load(
    world: World, gateway: Gateway, proxies: tuple[TcpProxy, TcpProxy]
) -> None:
    amqp_proxy, pg_proxy = proxies
    ids = [f"load-{n}" for n in range(SIGNALS)]
    links = [client_order_id(sid, 0) for sid in ids]

    async def produce() -> None:
        for n, sid in enumerate(ids):
            await world.bus.publish(SIGNALS_QUEUE, encode(market_signal(sid, n)))
            await asyncio.sleep(PACE)

    async def delivered() -> bool:
        seen = world.events.by_order()
        return all({"order.created", "order.filled"} <= set(seen.get(link, {})) for link in links)

    env = {**bybit_env(world.fake), "OM_PREFETCH": "16", "OM_PUBLISH_TIMEOUT_SECONDS": "1"}
    db_url, amqp_url = through(world.db_url, pg_proxy), through(world.amqp_url, amqp_proxy)
    async with running(db_url, amqp_url, env=env) as stack:
        producer = asyncio.create_task(produce())
        # The outages are the fault schedule: timed cuts while the stream flows.
        await asyncio.sleep(1.0)
        await amqp_proxy.cut()
        assert await await_true(lambda: _not(stack.service.bus.is_healthy()), timeout=5)
        operator_events = await _operator_changes(stack)
        await asyncio.sleep(OUTAGE)
        amqp_proxy.restore()
        assert await await_true(stack.service.bus.is_healthy, timeout=30)
        await asyncio.sleep(0.5)
        await pg_proxy.cut()
        # Read over a direct connection: nothing is decided while the service is cut off.
        await asyncio.sleep(0.3)  # a commit already on its way when the cut came may land
        decided = await _decided(world, ids)
        await asyncio.sleep(OUTAGE)
        assert await _decided(world, ids) == decided
        assert not (await stack.service.ready())["database"]
        pg_proxy.restore()
        await producer
        settled = await await_true(lambda: world.db.settled(ids), timeout=90)
        seen = settled and await await_true(delivered, timeout=30)

        async def operator_events_arrived() -> bool:
            return operator_events <= {e["event_id"] for e in world.events.events}

        arrived = await await_true(operator_events_arrived, timeout=30)
        assert all((await stack.service.ready()).values())
    tally = await audit(world.db, world.fake, world.events, ids)
    assert settled and seen and tally.clean(), tally.report()
    assert arrived, "trading_state.changed events committed during the outage were lost"


async def _operator_changes(stack: Stack) -> set[str]:
    """Two trading-state changes, as the API makes them; their event ids."""
    ids = set()
    for reason in ("drill: broker down", "drill: still trading"):
        async with stack.service.sessions() as session, session.begin():
            await set_state(session, TradingState.ACTIVE, reason, actor="test")
        ids.add(await _last_trading_state_event(stack))
    return ids


async def _last_trading_state_event(stack: Stack) -> str:
    async with stack.service.sessions() as session:
        row = (
            await session.exec(
                select(OutboxEvent)
                .where(col(OutboxEvent.event_type) == "trading_state.changed")
                .order_by(col(OutboxEvent.id).desc())
            )
        ).first()
    assert row is not None
    return row.event_id


async def _not(flag: Awaitable[bool]) -> bool:
    return not await flag


async def _decided(world: World, ids: list[str]) -> set[str]:
    rows = await world.db.signals(ids)
    return {sid for sid, row in rows.items() if row.status in ("placed", "rejected")}
