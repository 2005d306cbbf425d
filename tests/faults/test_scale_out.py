"""Scenario 5: three ``om run`` instances share partitions; one is killed, then the leader.

Three service processes run on one PostgreSQL database and one RabbitMQ vhost with
``OM_PARTITIONS=8``, trading on the fake Bybit, whose fills reach them through the WS-Gateway
and ``ws-gateway.order``. Signals for eight symbols are published at a steady rate. A third
of the way in, one instance that does not run the singletons is killed with SIGKILL; two
thirds in, the one that does (outbox relay, reconciler). The survivor must end with:

* no signal lost, none decided twice, no order placed twice on the exchange (nor a create
  re-sent without the lookups the protocol requires), fills and positions as the exchange's;
* every order's events published at least once, and once after de-duplication by event_id;
* each symbol's signals decided in the order they were published;
* the singletons taken over within seconds, the takeover reconciliation done, and the relay
  publishing the events of signals decided after the leader died.

Before the kills, the partitions must be spread over all three instances.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlmodel import col, select

from om_core.cluster.locks import NAMESPACE
from om_core.db.models import SignalRecord
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.orders.client_id import client_order_id
from tests.fake_bybit import default_instruments, linear_instrument
from tests.faults.conftest import World
from tests.faults.support import (
    RecordingFakeBybit,
    ServiceProcess,
    audit,
    await_true,
    bybit_env,
    encode,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

#: symbol → (price, order quantity): three default instruments and five more.
MARKETS: dict[str, tuple[str, str]] = {
    "BTCUSDT": ("60000", "0.001"),
    "ETHUSDT": ("3000", "0.01"),
    "SOLUSDT": ("150", "0.1"),
    "XRPUSDT": ("0.5", "20"),
    "DOGEUSDT": ("0.1", "100"),
    "ADAUSDT": ("0.4", "30"),
    "LINKUSDT": ("15", "1"),
    "AVAXUSDT": ("30", "1"),
}
SYMBOLS = list(MARKETS)
SIGNALS = 240
RATE = 30.0  # signals a second: ~8 s of load
PARTITIONS = 8
SINGLETONS_SLOT = 1
ROLES = {1, 2, 3}


@pytest.fixture
async def fake() -> AsyncIterator[RecordingFakeBybit]:
    extra = [
        linear_instrument(
            symbol,
            base_coin=symbol.removesuffix("USDT"),
            tick_size="0.0001",
            qty_step=qty,
            max_order_qty="1000000",
            max_mkt_order_qty="1000000",
            max_price="1000000",
            min_notional="1",
            symbol_id=900 + n,
        )
        for n, (symbol, (_, qty)) in enumerate(MARKETS.items())
        if symbol not in ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    ]
    prices = {symbol: Decimal(price) for symbol, (price, _) in MARKETS.items()}
    async with RecordingFakeBybit(instruments=default_instruments() + extra, prices=prices) as f:
        yield f


def signal(n: int) -> dict[str, Any]:
    symbol = SYMBOLS[n % len(SYMBOLS)]
    side = "buy" if (n // len(SYMBOLS)) % 2 == 0 else "sell"
    return {"signal_id": f"scale-{n}", "symbol": symbol, "side": side, "qty": MARKETS[symbol][1]}


def env(world: World) -> dict[str, str]:
    return {
        "OM_DATABASE_URL": world.db_url,
        "OM_BROKER_URL": world.amqp_url,
        "OM_API_ENABLED": "false",
        "OM_DB_AUTO_MIGRATE": "false",
        "OM_PARTITIONS": str(PARTITIONS),
        "OM_CLUSTER_CHECK_INTERVAL": "0.5",
        "OM_CLUSTER_SESSION_TIMEOUT": "5",
        "OM_SYNC_INTERVAL": "3",
        "OM_SHUTDOWN_GRACE_SECONDS": "2",
        "OM_MAX_SIGNAL_AGE_SECONDS": "300",
        "OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL": "none",
        "OM_PLUGIN_RISK_MAX_POSITION_NOTIONAL": "none",
        "OM_LOG_LEVEL": "INFO",
        **bybit_env(world.fake),
    }


async def slots_by_process(db_url: str) -> dict[int, set[int]]:
    """OS pid of each live instance → the coordination slots it holds (application_name of
    its coordination session is ``om:<host>:<pid>``)."""
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch(
            "SELECT a.application_name AS app, l.objid::bigint AS slot FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.objsubid = 2 AND l.granted AND l.classid = $1::bigint::oid",
            NAMESPACE,
        )
    finally:
        await conn.close()
    out: dict[int, set[int]] = defaultdict(set)
    for row in rows:
        match = re.fullmatch(r"om:.*:(\d+)", row["app"] or "")
        if match:
            out[int(match.group(1))].add(int(row["slot"]))
    return {pid: {s for s in slots if s} for pid, slots in out.items()}


def signal_partitions(slots: set[int]) -> int:
    return len([s for s in slots if 1000 <= s < 1000 + PARTITIONS])


async def test_three_instances_one_killed_then_the_leader(
    world: World, gateway: Any, tmp_path: Path
) -> None:
    procs = [ServiceProcess(env(world), tmp_path / f"om-{i}.log") for i in range(3)]
    for proc in procs:
        await proc.start()
    try:
        await _scenario(world, procs)
    finally:
        for proc in procs:
            await proc.stop()


async def _scenario(world: World, procs: list[ServiceProcess]) -> None:
    by_pid = {p.proc.pid: p for p in procs if p.proc is not None}
    logs = "\n".join(f"--- {p.log_path.name}\n{p.log()}" for p in procs)

    async def all_up() -> bool:
        return all(p.is_up() for p in procs)

    assert await await_true(all_up, timeout=90), f"the instances did not start\n{logs}"

    async def spread() -> bool:
        # Steady state: each instance consumes two or three signal partitions and runs one
        # role (the singletons, or one of the two routers).
        held = await slots_by_process(world.db_url)
        return len(held) == 3 and all(
            signal_partitions(s) >= 2 and len(s & ROLES) == 1 for s in held.values()
        )

    assert await await_true(spread, timeout=30), await slots_by_process(world.db_url)

    ids = [f"scale-{n}" for n in range(SIGNALS)]
    third = asyncio.Event()
    two_thirds = asyncio.Event()

    async def load() -> None:
        start = time.monotonic()
        for n in range(SIGNALS):
            delay = start + n / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await world.bus.publish(SIGNALS_QUEUE, encode(signal(n)), message_id=f"scale-{n}")
            if n == SIGNALS // 3:
                third.set()
            if n == 2 * SIGNALS // 3:
                two_thirds.set()

    loader = asyncio.create_task(load())

    # One instance that does not run the singletons dies first.
    await third.wait()
    held = await slots_by_process(world.db_url)
    leader = next(pid for pid, slots in held.items() if SINGLETONS_SLOT in slots)
    victim = next(pid for pid in held if pid != leader)
    by_pid[victim].kill()
    assert await by_pid[victim].exited(timeout=10) == -9

    # Then the leader.
    await two_thirds.wait()
    held = await slots_by_process(world.db_url)
    leader = next(pid for pid, slots in held.items() if SINGLETONS_SLOT in slots)
    survivor = by_pid[next(pid for pid in by_pid if pid not in (victim, leader))]
    by_pid[leader].kill()
    killed_at = time.monotonic()
    assert await by_pid[leader].exited(timeout=10) == -9

    async def taken_over() -> bool:
        held = await slots_by_process(world.db_url)
        return SINGLETONS_SLOT in held.get(survivor.proc.pid if survivor.proc else 0, set())

    assert await await_true(taken_over, timeout=15, interval=0.1), survivor.log()
    takeover = time.monotonic() - killed_at
    await loader

    assert await await_true(lambda: world.db.settled(ids), timeout=120), survivor.log()
    links = [client_order_id(sid, 0) for sid in ids]

    async def delivered() -> bool:
        seen = world.events.by_order()
        return all({"order.created", "order.filled"} <= set(seen.get(link, {})) for link in links)

    await await_true(delivered, timeout=30)
    # Exactly what the exchange has: nothing lost, nothing twice, events de-duplicable.
    tally = await audit(world.db, world.fake, world.events, ids)
    assert tally.clean(), f"{tally.report()}\n{survivor.log(20000)}"

    # Each symbol's signals were decided (their rows written, under the symbol's lock) in
    # the order they were published.
    async with world.db.sessions() as session:
        rows = (await session.exec(select(SignalRecord).order_by(col(SignalRecord.id)))).all()
    decided: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        decided[row.symbol or ""].append(row.signal_id)
    for symbol in SYMBOLS:
        published = [f"scale-{n}" for n in range(SIGNALS) if signal(n)["symbol"] == symbol]
        assert decided[symbol] == published, symbol

    # The survivor took the singletons over within seconds, reconciled, and its relay
    # published what was decided after the leader died (settled() saw an empty outbox).
    assert takeover < 10, takeover
    log = survivor.log(10**7)
    assert "this instance runs the singletons" in log
    assert "reconciled on taking the singletons" in log
    held = await slots_by_process(world.db_url)
    assert signal_partitions(held[survivor.proc.pid if survivor.proc else 0]) == PARTITIONS
