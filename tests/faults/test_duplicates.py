"""Scenario 4: every signal published three times; every order report duplicated and
shuffled.

Resting limit orders are filled on the fake exchange in two steps; the Bybit-shaped reports
of each step (``New``, ``PartiallyFilled``, ``Filled``, with the exchange's own cumulative
figures) are published to ``ws-gateway.order`` two or three times each, in one shuffled
sequence, in the three shapes the gateway contract accepts. Afterwards: one order per
signal; orders and positions exactly what the in-order stream gives (a second service on its
own database receives the same reports once, in order); events, de-duplicated by event_id,
one per real change — and the fills they carry add up to each order's quantity, once.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlmodel import select

from om_core.db.models import Order, Position
from om_core.messaging.topology import ORDER_UPDATES_QUEUE, SIGNALS_QUEUE
from om_core.orders.client_id import client_order_id
from tests.conftest import wait_for
from tests.fake_bybit import FakeOrder
from tests.faults.conftest import World
from tests.faults.support import (
    audit,
    await_true,
    bybit_env,
    encode,
)
from tests.flow.bybit_messages import enveloped, order_object, stream
from tests.flow.stack import Stack, running

SEED = 4242
#: (symbol, side, qty, limit price): resting orders (the fake's prices are 60000/3000/150).
#: Per symbol one side and one price: the position is then the same for any interleaving of
#: the orders' fills, so the shuffled run must reproduce the in-order one exactly.
ORDERS = [
    ("BTCUSDT", "buy", "0.004", "50000"),
    ("BTCUSDT", "buy", "0.002", "50000"),
    ("BTCUSDT", "buy", "0.006", "50000"),
    ("ETHUSDT", "sell", "0.05", "3500"),
    ("ETHUSDT", "sell", "0.08", "3500"),
    ("SOLUSDT", "buy", "1.0", "100"),
    ("SOLUSDT", "buy", "0.5", "100"),
    ("SOLUSDT", "buy", "0.3", "100"),
]
T0 = 1_900_000_000_000
QUIET = {"OM_SYNC_INTERVAL": "0", "OM_PREFETCH": "8"}


def signal(n: int) -> dict[str, Any]:
    symbol, side, qty, price = ORDERS[n]
    return {"signal_id": f"dup-{n}", "symbol": symbol, "side": side, "qty": qty, "price": price}


def report(order: FakeOrder, step: int) -> dict[str, Any]:
    """The exchange's view of ``order`` as a Bybit ``order`` topic object."""
    return order_object(
        link_id=order.order_link_id,
        order_id=order.order_id,
        status=order.status,
        qty=str(order.qty),
        cum_qty=str(order.cum_exec_qty),
        cum_value=str(order.cum_exec_value),
        cum_fee=str(order.cum_exec_fee),
        side=order.side,
        symbol=order.symbol,
        price=str(order.price),
        updated_ms=T0 + step * 1000,
    )


def shape(obj: dict[str, Any], rng: random.Random) -> bytes:
    """One of the accepted shapes: stream message, bare object, gateway envelope."""
    kind = rng.randrange(3)
    message: dict[str, Any] = (
        stream(obj) if kind == 0 else obj if kind == 1 else enveloped(stream(obj))
    )
    return json.dumps(message).encode()


async def test_duplicated_signals_and_shuffled_duplicated_updates(
    world: World, tmp_path: Path
) -> None:
    fake = world.fake
    rng = random.Random(SEED)
    ids = [f"dup-{n}" for n in range(len(ORDERS))]
    links = [client_order_id(sid, 0) for sid in ids]
    env = {**bybit_env(fake), **QUIET}
    async with running(world.db_url, world.amqp_url, env=env) as stack:
        copies = [encode(signal(n)) for n in range(len(ORDERS)) for _ in range(3)]
        rng.shuffle(copies)
        for body in copies:
            await world.bus.publish(SIGNALS_QUEUE, body)
        for sid in ids:
            assert (await stack.outcome(sid)).status == "placed"

        # What the exchange reports, step by step: New, PartiallyFilled, Filled.
        in_order: list[dict[str, Any]] = []
        for link in links:
            order = fake.orders[link]
            in_order.append(report(order, 1))
            await fake.fill(link, qty=(order.qty / 2).quantize(Decimal("0.001")))
            in_order.append(report(order, 2))
            await fake.fill(link)
            in_order.append(report(order, 3))
        shuffled = [shape(r, rng) for r in in_order for _ in range(rng.choice((2, 3)))]
        rng.shuffle(shuffled)
        for body in shuffled:
            await world.bus.publish(ORDER_UPDATES_QUEUE, body)
        assert await await_true(lambda: world.db.settled(ids), timeout=30)
        assert await await_true(lambda: _events_complete(world, links), timeout=15)
        shuffled_state = await _state(stack)

    tally = await audit(world.db, fake, world.events, ids, at_most={"order.partially_filled": 1})
    assert tally.clean(), tally.report()
    _fills_in_events_add_up(world, links)

    # The same reports, once each and in order, to a service of its own.
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'in-order.db'}"
    async with running(sqlite, "memory://", env=env) as reference:
        for n in range(len(ORDERS)):
            await reference.publish(signal(n))
            assert (await reference.outcome(f"dup-{n}")).status == "placed"
        for obj in in_order:
            await reference.service.event_subscriber.process_bytes(json.dumps(stream(obj)).encode())
        await wait_for(lambda: _all_filled(reference, links), message="in-order reference filled")
        assert await _state(reference) == shuffled_state


async def _events_complete(world: World, links: list[str]) -> bool:
    seen = world.events.by_order()
    return all({"order.created", "order.filled"} <= set(seen.get(link, {})) for link in links)


def _fills_in_events_add_up(world: World, links: list[str]) -> None:
    unique = {e["event_id"]: e for e in world.events.events}.values()
    for link in links:
        fills = [
            Decimal(e["fill"]["qty"])
            for e in unique
            if e["order"]["client_order_id"] == link and e.get("fill")
        ]
        [final] = [
            e["order"]
            for e in unique
            if e["order"]["client_order_id"] == link and e["event_type"] == "order.filled"
        ]
        assert sum(fills, Decimal(0)) == Decimal(final["qty"]), (link, fills)


async def _all_filled(stack: Stack, links: list[str]) -> bool:
    orders = {o.client_order_id: o for o in await stack.orders()}
    return all(link in orders and orders[link].status == "filled" for link in links)


async def _state(stack: Stack) -> dict[str, Any]:
    """Orders (by client id) and positions, as comparable tuples."""
    async with stack.service.sessions() as session:
        orders = (await session.exec(select(Order))).all()
        positions = (await session.exec(select(Position))).all()
    return {
        "orders": {
            o.client_order_id: (
                o.status,
                o.filled_qty,
                o.cum_exec_value,
                o.cum_fee,
                o.avg_fill_price,
            )
            for o in orders
        },
        "positions": {
            (p.symbol, p.position_idx): (p.size, p.avg_entry_price, p.realized_pnl, p.fees_paid)
            for p in positions
        },
    }
