"""Scenario 1: kill -9 at every kill point (and at random moments), restart, count.

The service runs as a subprocess (``python -m om_core.cli run``) against a fresh PostgreSQL
database, a fresh RabbitMQ vhost and the fake Bybit of this process; a WS-Gateway here streams
the fake's order reports into ``ws-gateway.order``. Each cycle starts the service with
``OM_FAULT_KILL_AT=<point>:<N>``, publishes a burst of signals, waits for the process to
SIGKILL itself there, restarts it without the variable, lets it settle what was in doubt and
drain, and stops it. Then the audit counts, over every cycle's signals: signals lost or
decided twice, orders lost or duplicated on the exchange (and any create re-sent without the
lookups the protocol requires), events lost or duplicated after de-duplication by event_id,
fills and positions that differ from the exchange's. Every count must be 0.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.orders.client_id import client_order_id
from plugins_builtin.bybit.gateway import Gateway
from tests.faults.conftest import World
from tests.faults.support import (
    ServiceProcess,
    Tally,
    audit,
    audit_positions,
    await_true,
    bybit_env,
    encode,
    market_signal,
)

#: Every point of om_core.faults the service passes while trading.
POINTS = (
    "signal.received",
    "signal.intent_committed",
    "exchange.create_sent",
    "exchange.result_committed",
    "signal.before_ack",
    "update.received",
    "update.applied",
    "update.before_ack",
    "outbox.published",
    "outbox.marked_sent",
)
PASSES = (1, 3)
RANDOM_KILLS = 3
BURST = 10
SEED = 20260


def service_env(world: World) -> dict[str, str]:
    return {
        "OM_DATABASE_URL": world.db_url,
        "OM_BROKER_URL": world.amqp_url,
        "OM_API_ENABLED": "false",
        "OM_DB_AUTO_MIGRATE": "true",
        "OM_SHUTDOWN_GRACE_SECONDS": "2",
        "OM_MAX_SIGNAL_AGE_SECONDS": "300",
        "OM_LOG_LEVEL": "INFO",
        **bybit_env(world.fake),
    }


async def run_cycle(
    world: World,
    name: str,
    *,
    kill_at: str | None,
    kill_after: float | None,
    log_dir: Path,
    burst: int = BURST,
) -> tuple[Tally, list[str]]:
    """One crash and recovery; returns the audit of its signals and harness problems."""
    harness: list[str] = []
    ids = [f"{name}-{i}" for i in range(burst)]
    env = service_env(world)
    doomed = ServiceProcess(
        {**env, "OM_FAULT_KILL_AT": kill_at} if kill_at else env, log_dir / f"{name}-a.log"
    )
    await doomed.start()
    if kill_after is not None:
        # An outside kill -9 at a moment of the fault schedule's choosing, while the burst
        # is being worked on.
        await await_true(lambda: _up(doomed), timeout=30)
    for n, sid in enumerate(ids):
        await world.bus.publish(SIGNALS_QUEUE, encode(market_signal(sid, n)))
    if kill_after is not None:
        await asyncio.sleep(kill_after)
        doomed.kill()
    code = await doomed.exited(timeout=45)
    if code is None:
        doomed.kill()
        await doomed.exited(timeout=10)
        harness.append(f"{name}: never reached {kill_at}\n{doomed.log()}")
    elif code != -9:
        harness.append(f"{name}: exited {code}, not by SIGKILL\n{doomed.log()}")

    survivor = await ServiceProcess(env, log_dir / f"{name}-b.log").start()
    links = [client_order_id(sid, 0) for sid in ids]

    async def delivered() -> bool:
        seen = world.events.by_order()
        return all({"order.created", "order.filled"} <= set(seen.get(link, {})) for link in links)

    # Up means startup settled every order left in doubt and consumption began.
    await await_true(lambda: _up(survivor), timeout=60)
    settled = await await_true(lambda: world.db.settled(ids), timeout=60)
    if settled:
        await await_true(delivered, timeout=15)
    code = await survivor.stop()
    if code != 0:
        harness.append(f"{name}: the restarted service exited {code}\n{survivor.log()}")
    tally = await audit(world.db, world.fake, world.events, ids, check_positions=False)
    if not tally.clean():
        tally.problems.append(f"{name} survivor log:\n{survivor.log()}")
    return tally, harness


async def _up(process: ServiceProcess) -> bool:
    return process.is_up()


async def test_kill_9_at_every_point_loses_and_duplicates_nothing(
    world: World, gateway: Gateway, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    cycles: list[tuple[str, str | None, float | None]] = [
        (f"{point.replace('.', '_')}-{n}", f"{point}:{n}", None) for point in POINTS for n in PASSES
    ]
    cycles += [(f"random-{i}", None, rng.uniform(0.02, 0.4)) for i in range(RANDOM_KILLS)]
    total = Tally()
    harness: list[str] = []
    per_cycle: dict[str, dict[str, int]] = {}
    for name, kill_at, kill_after in cycles:
        tally, problems = await run_cycle(
            world, name, kill_at=kill_at, kill_after=kill_after, log_dir=tmp_path
        )
        per_cycle[name] = {k: v for k, v in tally.counts().items() if v}
        total += tally
        harness += problems
        if problems or not tally.clean():
            break  # the history is broken already; more cycles would only take minutes each
    await audit_positions(world.db, world.fake, total)
    assert len(cycles) >= 20
    assert not harness, "\n".join(harness)
    dirty = {name: counts for name, counts in per_cycle.items() if counts}
    assert total.clean(), f"{dirty}\n{total.report()}"
    assert len(per_cycle) == len(cycles)
