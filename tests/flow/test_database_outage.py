"""While PostgreSQL is unreachable a signal is held, not acked and not lost; when the
database is back it is processed exactly once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.orders.client_id import client_order_id
from tests.conftest import wait_for
from tests.flow.stack import running
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def pg_proxy() -> AsyncIterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", 5432)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def test_a_signal_waits_out_a_database_outage(
    server_urls: tuple[str, str], pg_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    db_url, amqp_url = server_urls
    parts = urlsplit(db_url)
    proxied = db_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{pg_proxy.port}")
    caplog.set_level(logging.WARNING, logger="om_core.engine.consumer")
    async with running(proxied, amqp_url) as stack:
        await pg_proxy.cut()
        await stack.publish(
            {"signal_id": "db-down", "symbol": "BTCUSDT", "side": "buy", "qty": "0.010"}
        )
        await wait_for(
            lambda: any("failed transiently" in r.getMessage() for r in caplog.records),
            timeout=20,
            message="the consumer to hit the outage",
        )
        # Held: delivered to the consumer, not acknowledged, not dead-lettered.
        assert await stack.service.bus.message_count(SIGNALS_QUEUE) == 0
        assert await stack.service.bus.message_count(SIGNALS_QUEUE + ".dlq") == 0
        pg_proxy.restore()
        row = await stack.outcome("db-down", timeout=60)
        assert row.status == "placed"
        assert stack.paper.create_calls == [client_order_id("db-down", 0)]
