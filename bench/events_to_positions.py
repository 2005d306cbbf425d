"""Benchmark 2: exchange reports → fills applied → positions → events.

    python -m bench.events_to_positions [--count 3000] [--embedded]

Publishes ``count`` Bybit-shaped ``order`` messages to ``ws-gateway.order`` as fast as it can
(each one fills an external order completely, spread over 30 symbols) and measures fills
applied per second and publish → ``order.filled`` event latency.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import CpuMeter, line, machine, percentiles, pg_database, publisher, vhost
from bench.harness import service
from om_core.events.payloads import dumps
from om_core.messaging.topology import ORDER_UPDATES_QUEUE


def report(order_id: str, symbol: str, n: int) -> dict[str, object]:
    now = int(time.time() * 1000)
    return {
        "id": str(uuid.uuid4()),
        "topic": "order",
        "creationTime": now,
        "data": [
            {
                "category": "linear",
                "symbol": symbol,
                "orderId": order_id,
                "orderLinkId": "",
                "side": "Buy" if n % 2 else "Sell",
                "orderType": "Market",
                "price": "100",
                "qty": "1",
                "timeInForce": "IOC",
                "orderStatus": "Filled",
                "leavesQty": "0",
                "cumExecQty": "1",
                "cumExecValue": "100.5",
                "cumExecFee": "0.055",
                "avgPrice": "100.5",
                "positionIdx": 0,
                "createdTime": str(now),
                "updatedTime": str(now),
                "rejectReason": "EC_NoError",
            }
        ],
    }


async def run(db_url: str, broker_url: str, count: int) -> dict[str, float]:
    async with service(db_url, broker_url) as (_svc, taps, bus):
        published: dict[str, float] = {}
        meter = CpuMeter()
        start = time.perf_counter()
        async with publisher(bus) as publish:
            for n in range(count):
                oid = f"ext-{uuid.uuid4()}"
                body = dumps(report(oid, f"B{n % 30}USDT", n)).encode()
                published[oid] = time.perf_counter()
                await publish(ORDER_UPDATES_QUEUE, body)
        filled = taps.events.setdefault("order.filled", {})
        deadline = time.monotonic() + 300
        while len(filled) < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        cpu = meter.per_message(len(filled))
    last = max(filled.values(), default=time.perf_counter())
    latency = [(filled[o] - published[o]) * 1e3 for o in published if o in filled]
    stats: dict[str, float] = {
        "n": float(len(latency)),
        "fills_per_s": len(latency) / (last - start) if latency else 0.0,
    }
    stats.update({f"e2e_{k}_ms": v for k, v in percentiles(latency).items()})
    stats.update(cpu)
    return stats


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--embedded", action="store_true", help="SQLite + in-process bus")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.embedded:
        with tempfile.TemporaryDirectory() as tmp:
            stats = await run(f"sqlite+aiosqlite:///{Path(tmp) / 'b.db'}", "memory://", args.count)
        print(line("events→positions embedded burst", stats))
    else:
        async with pg_database() as (db_url, _), vhost() as amqp:
            stats = await run(db_url, amqp, args.count)
        print(line("events→positions rabbitmq+postgres burst", stats))


if __name__ == "__main__":
    asyncio.run(main())
