"""Fixtures of the fault-injection suite: a recording Bybit fake, and a "world" — fresh
PostgreSQL database, fresh RabbitMQ vhost, the fake, a WS-Gateway streaming the fake's order
updates into ``ws-gateway.order``, and a consumer collecting every published event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from om_core.db import migrate
from om_core.messaging.rabbitmq import RabbitBus
from plugins_builtin.bybit.gateway import Gateway, GatewayConfig
from tests.conftest import wait_for
from tests.faults.support import API_KEY, API_SECRET, Db, EventCollector, RecordingFakeBybit
from tests.support.gateway import bus_context


@pytest.fixture
async def fake() -> AsyncIterator[RecordingFakeBybit]:
    async with RecordingFakeBybit() as server:
        yield server


@dataclass
class World:
    db_url: str
    amqp_url: str
    fake: RecordingFakeBybit
    bus: RabbitBus
    db: Db
    events: EventCollector


@pytest.fixture
async def world(server_urls: tuple[str, str], fake: RecordingFakeBybit) -> AsyncIterator[World]:
    db_url, amqp_url = server_urls
    await migrate.upgrade(db_url)
    bus = RabbitBus(amqp_url)
    await bus.start()
    db = Db(db_url)
    events = await EventCollector(bus).start()
    try:
        yield World(db_url, amqp_url, fake, bus, db, events)
    finally:
        await events.stop()
        await db.close()
        await bus.close()


@pytest.fixture
async def gateway(world: World) -> AsyncIterator[Gateway]:
    """The WS-Gateway streaming the fake's order and execution reports to ``ws-gateway.order``."""
    config = GatewayConfig(
        ws_url=world.fake.ws_private_url,
        api_key=API_KEY,
        api_secret=SecretStr(API_SECRET),
        account="faults",
        backoff_initial=0.1,
        backoff_max=0.5,
    )
    gw = Gateway(config, bus_context(world.bus))
    await gw.start()
    try:
        await wait_for(lambda: world.fake.ws_connections == 1, message="gateway connected")
        yield gw
    finally:
        await gw.stop()
