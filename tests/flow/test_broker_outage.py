"""While RabbitMQ is unreachable, state changes still commit and events wait in the outbox;
when it is back, the backlog drains and every event is delivered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from sqlmodel import col, select

from om_core.db.models import OutboxEvent
from om_core.messaging.rabbitmq import RabbitBus
from om_core.messaging.topology import ORDER_EVENTS_QUEUE
from tests.conftest import wait_for
from tests.flow.reports import execution, message, order
from tests.flow.stack import running
from tests.flow.test_reverse_flow import resting_order
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", 5672)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def test_events_survive_a_broker_outage(
    server_urls: tuple[str, str], proxy: TcpProxy
) -> None:
    db_url, amqp_url = server_urls
    vhost = urlsplit(amqp_url).path
    proxied = f"amqp://guest:guest@127.0.0.1:{proxy.port}{vhost}"
    async with running(db_url, proxied) as stack:
        placed = await resting_order(stack, "outage")
        await stack.outbox_drained()
        assert placed.exchange_order_id is not None

        await proxy.cut()
        cid, oid = placed.client_order_id, placed.exchange_order_id
        fills = [
            message(
                execution(cid=cid, oid=oid, qty="0.004", price="50000", fee="0.04"),
                order(
                    cid=cid,
                    oid=oid,
                    status="partially_filled",
                    filled="0.004",
                    value="200",
                    fees={"USDT": "0.04"},
                ),
            ),
            message(
                execution(cid=cid, oid=oid, qty="0.006", price="50000", fee="0.06"),
                order(
                    cid=cid,
                    oid=oid,
                    status="filled",
                    filled="0.010",
                    value="500",
                    fees={"USDT": "0.1"},
                ),
            ),
        ]
        # The gateway's messages reach us (here: handed straight to the subscriber, since
        # our own broker link is down); state commits without the broker.
        for body in fills:
            await stack.service.event_subscriber.process_bytes(body)
        await stack.order_status(placed.client_order_id, "filled")

        async def backlog() -> int:
            async with stack.service.sessions() as session:
                rows = await session.exec(
                    select(OutboxEvent.id).where(col(OutboxEvent.sent_at).is_(None))
                )
                return len(rows.all())

        assert await backlog() == 2

        proxy.restore()
        await stack.outbox_drained(timeout=60)

        # Read what reached the broker over a direct connection.
        direct = RabbitBus(amqp_url)
        await direct.start()
        try:
            seen = []
            while (m := await direct.get(ORDER_EVENTS_QUEUE, timeout=1.0)) is not None:
                seen.append(json.loads(m.body))
        finally:
            await direct.close()
        # At-least-once: a consumer de-duplicates by event_id, and then sees every change once.
        unique = list({e["event_id"]: e for e in seen}.values())
        kinds = [e["event_type"] for e in unique]
        assert kinds == ["order.created", "order.partially_filled", "order.filled"]
        await wait_for(lambda: stack.service.bus.is_healthy(), message="bus healthy again")
