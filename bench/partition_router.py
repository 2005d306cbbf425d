"""Benchmark: the partition router alone (OM_PARTITIONS): entry queue → partitions.

    python -m bench.partition_router [--count 5000] [--partitions 8] [--prefetch 256]

One router runs per entry queue in a whole deployment (it keeps each symbol's messages in
their publish order), so its rate bounds what the instances behind it can be given. This
fills ``model-service.trading_signals`` with ``count`` signals over 24 symbols, then starts
the router and measures how fast it moves them into the partition queues, and the CPU per
message of this process (the router) and of RabbitMQ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench.common import CpuMeter, line, machine, publisher, vhost
from om_core.messaging.rabbitmq import RabbitBus
from om_core.messaging.router import PartitionRouter
from om_core.messaging.topology import SIGNALS_QUEUE


async def run(count: int, partitions: int, prefetch: int) -> dict[str, float]:
    async with vhost() as url:
        bus = RabbitBus(url, partitions=partitions, queues=(SIGNALS_QUEUE,))
        await bus.start()
        try:
            async with publisher(bus) as publish:
                for n in range(count):
                    body = {"signal_id": f"s{n}", "symbol": f"X{n % 24:02d}USDT", "side": "buy"}
                    await publish(SIGNALS_QUEUE, json.dumps(body).encode(), message_id=f"s{n}")
            meter = CpuMeter()
            start = time.perf_counter()
            router = PartitionRouter(bus, SIGNALS_QUEUE, prefetch=prefetch, grace=5)
            await router.start()
            while await bus.message_count(SIGNALS_QUEUE) > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            queues = bus.partitioned[SIGNALS_QUEUE]
            while sum([await bus.message_count(q) for q in queues]) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
            stats = {"n": float(count), "routed_per_s": count / elapsed}
            stats.update(meter.per_message(count))
            await router.stop()
            return stats
        finally:
            await bus.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--prefetch", type=int, default=256)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    stats = await run(args.count, args.partitions, args.prefetch)
    print(line(f"partition router, {args.partitions} partitions", stats), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
