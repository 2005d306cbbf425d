"""Run the real service in-process for a benchmark, with timing taps at its edges (and, on
request, more instances of it as ``om run`` processes beside it)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from om_core.config import load_settings
from om_core.messaging import MessageBus, create_bus
from om_core.messaging.base import Message
from om_core.messaging.topology import ORDER_EVENTS_QUEUE, ORDER_UPDATES_QUEUE, SIGNALS_QUEUE
from om_core.service import Service


@dataclass
class Taps:
    """perf_counter() timestamps keyed by signal id / client order id."""

    received: dict[str, float] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)
    events: dict[str, dict[str, float]] = field(default_factory=dict)

    def event(self, event_type: str, key: str) -> None:
        self.events.setdefault(event_type, {})[key] = time.perf_counter()


@asynccontextmanager
async def service(
    db_url: str,
    broker_url: str,
    extra_env: Mapping[str, str] | None = None,
    *,
    instances: int = 1,
) -> AsyncIterator[tuple[Service, Taps, MessageBus]]:
    """A started service with taps on message receipt and exchange send, and a second bus
    connection (the same in-process bus for memory://) for publishing and listening.

    ``instances`` > 1 adds ``om run`` processes on the same database and broker, consuming
    the same queues: the way a deployment uses more cores. Only the in-process instance has
    taps, so the internal times are those of the signals it took."""
    env = {
        "OM_DATABASE_URL": db_url,
        "OM_BROKER_URL": broker_url,
        "OM_DB_AUTO_MIGRATE": "true",
        "OM_API_ENABLED": "false",
        "OM_LOG_LEVEL": "WARNING",
        "OM_PLUGIN_PAPER_RANDOM_WALK": "false",
        "OM_PLUGIN_PAPER_INITIAL_BALANCE": "1000000000",
        "OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL": "none",
        "OM_POSITION_SNAPSHOT_INTERVAL": "0",
        "OM_SYNC_INTERVAL": "0",
        **(extra_env or {}),
    }
    settings = load_settings(env=env)
    svc = Service(settings, env=env)
    await svc.start(consume=False)
    taps = Taps()

    place = svc.exchange.place_order

    async def timed_place(request: Any) -> Any:
        taps.sent[request.client_order_id] = time.perf_counter()
        return await place(request)

    svc.exchange.place_order = timed_place  # type: ignore[method-assign]

    async def timed_handle(message: Message) -> None:
        if message.message_id:
            taps.received[message.message_id] = time.perf_counter()
        await svc.signal_handler(message)

    consumers = [
        await svc.bus.consume(ORDER_UPDATES_QUEUE, svc.update_handler, prefetch=settings.prefetch),
        await svc.bus.consume(SIGNALS_QUEUE, timed_handle, prefetch=settings.prefetch),
    ]
    others = [await _instance(env) for _ in range(instances - 1)]
    other = svc.bus if broker_url.startswith("memory") else create_bus(broker_url)
    if other is not svc.bus:
        await other.start()

    async def on_event(message: Message) -> None:
        import json

        event = json.loads(message.body)
        key = event.get("signal_id") or (event.get("order") or {}).get("exchange_order_id")
        taps.event(event["event_type"], key or "")

    consumers.append(await other.consume(ORDER_EVENTS_QUEUE, on_event, prefetch=256))
    try:
        yield svc, taps, other
    finally:
        for consumer in consumers:
            await consumer.stop(5)
        if other is not svc.bus:
            await other.close()
        for process in others:
            process.terminate()
        for process in others:
            await process.wait()
        await svc.stop()


@asynccontextmanager
async def processes(
    db_url: str,
    broker_url: str,
    count: int,
    extra_env: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[Taps, MessageBus]]:
    """``count`` identical ``om run`` processes on one database and broker (migrated first),
    and a bus connection of this process for publishing and for listening to the events.

    With ``OM_PARTITIONS`` in ``extra_env`` it returns once every process consumes signal
    partitions, so a run measures the steady state, not the rebalancing after start."""
    env = {
        "OM_DATABASE_URL": db_url,
        "OM_BROKER_URL": broker_url,
        "OM_API_ENABLED": "false",
        "OM_LOG_LEVEL": "WARNING",
        "OM_PLUGIN_PAPER_RANDOM_WALK": "false",
        "OM_PLUGIN_PAPER_INITIAL_BALANCE": "1000000000",
        "OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL": "none",
        "OM_PLUGIN_RISK_MAX_POSITION_NOTIONAL": "none",
        "OM_POSITION_SNAPSHOT_INTERVAL": "0",
        "OM_SYNC_INTERVAL": "0",
        **(extra_env or {}),
    }
    from om_core.db import migrate

    await migrate.upgrade(db_url)
    started = [await _instance(env) for _ in range(count)]
    bus = create_bus(broker_url)
    await bus.start()
    taps = Taps()

    async def on_event(message: Message) -> None:
        import json

        event = json.loads(message.body)
        key = event.get("signal_id") or (event.get("order") or {}).get("exchange_order_id")
        taps.event(event["event_type"], key or "")

    consumer = await bus.consume(ORDER_EVENTS_QUEUE, on_event, prefetch=256)
    try:
        if int(env.get("OM_PARTITIONS", "0")) > 0:
            await _spread(db_url, count)
        yield taps, bus
    finally:
        await consumer.stop(5)
        await bus.close()
        for process in started:
            process.terminate()
        for process in started:
            await process.wait()


async def _spread(db_url: str, count: int, within: float = 60) -> None:
    """Wait until ``count`` instances each consume signal partitions (coordination slots
    1000 and up, see om_core.service)."""
    import asyncpg

    from om_core.cluster.locks import NAMESPACE

    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
    async with asyncio.timeout(within):
        while True:
            conn = await asyncpg.connect(dsn)
            try:
                holders = await conn.fetchval(
                    "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND objsubid = 2 AND granted AND classid = $1::bigint::oid "
                    "AND objid >= 1000 AND objid < 2000",
                    NAMESPACE,
                )
            finally:
                await conn.close()
            if holders >= count:
                return
            await asyncio.sleep(0.2)


async def _instance(env: Mapping[str, str]) -> asyncio.subprocess.Process:
    """``om run`` with ``env``, once it consumes (it prints its banner then)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "om_core.cli",
        "run",
        env={**os.environ, **env, "OM_DB_AUTO_MIGRATE": "false"},
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    async with asyncio.timeout(60):
        while not (await process.stdout.readline()).strip().startswith(b"Order Manager"):
            if process.returncode is not None:
                raise RuntimeError("an extra service instance did not start")
    return process
