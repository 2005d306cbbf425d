"""Scenario 2: the exchange times out after executing the order, and without executing it.

Either way the signal ends as exactly one order on the exchange. The executed one is found by
lookup and never sent again; the lost one is sent again — with the same orderLinkId — only
after three lookups that found nothing, past the resend guard (docs/exactly-once.md, rule 5).
"""

from __future__ import annotations

from om_core.orders.client_id import client_order_id
from plugins_builtin.bybit.gateway import Gateway
from tests.faults.conftest import World
from tests.faults.support import (
    MISSES_BEFORE_RESEND,
    audit,
    await_true,
    bybit_env,
    market_signal,
)
from tests.flow.stack import running


async def test_timeouts_with_and_without_execution_give_one_order_each(
    world: World, gateway: Gateway
) -> None:
    fake = world.fake
    env = {**bybit_env(fake), "OM_BYBIT_REQUEST_TIMEOUT_S": "0.5"}
    ids = ["before", "executed", "between", "not-executed", "after"]
    async with running(world.db_url, world.amqp_url, env=env) as stack:
        for n, sid in enumerate(ids):
            if sid == "executed":
                fake.timeout_next_create(execute=True, delay=1.5)
            elif sid == "not-executed":
                fake.timeout_next_create(execute=False, delay=1.5)
            await stack.publish(market_signal(sid, n))
            # One at a time: each fault must meet the signal it was set up for.
            await stack.outcome(sid, timeout=30)
        assert await await_true(lambda: world.db.settled(ids), timeout=30)
        seen = await await_true(lambda: _all_filled_events(world, ids), timeout=15)
    tally = await audit(world.db, fake, world.events, ids)
    assert seen and tally.clean(), tally.report()

    executed = fake.timeline[client_order_id("executed", 0)]
    assert executed == ["create"], executed  # looked up and found: never re-sent
    lost = fake.timeline[client_order_id("not-executed", 0)]
    assert lost.count("create") == 2 and "create-existing" not in lost, lost
    resend = lost.index("create", 1)
    assert lost[1:resend].count("miss") >= MISSES_BEFORE_RESEND, lost
    for sid in ("before", "between", "after"):
        assert fake.timeline[client_order_id(sid, 0)] == ["create"]


async def _all_filled_events(world: World, ids: list[str]) -> bool:
    seen = world.events.by_order()
    return all(
        {"order.created", "order.filled"} <= set(seen.get(client_order_id(sid, 0), {}))
        for sid in ids
    )
