"""Benchmark 1: signal → order, and the floor it is compared with.

    python -m bench.signal_to_order [--count 2000] [--rates 50,200,1000,burst] [--embedded]

For each rate it publishes ``count`` signals to ``model-service.trading_signals`` and
measures (a) the service's internal time from message received to exchange request sent,
(b) publish → ``order.created`` received on ``order-manager.order_events``, and throughput.
With RabbitMQ + PostgreSQL (default) it then runs the floor — bare aio-pika + asyncpg doing
the same I/O — and prints our cost as a ratio of it.
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
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.orders.client_id import client_order_id

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
QTY = {"BTCUSDT": "0.001", "ETHUSDT": "0.01", "SOLUSDT": "0.1"}


async def one_rate(
    db_url: str, broker_url: str, rate: float | None, count: int, instances: int = 1
) -> dict[str, float]:
    async with service(db_url, broker_url, instances=instances) as (_svc, taps, bus):
        run = uuid.uuid4().hex[:6]
        published: dict[str, float] = {}
        meter = CpuMeter()
        start = time.perf_counter()
        async with publisher(bus) as publish:
            for n in range(count):
                if rate:
                    delay = start + n / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                symbol = SYMBOLS[n % len(SYMBOLS)]
                sid = f"bench-{run}-{n}"
                body = dumps(
                    {
                        "signal_id": sid,
                        "symbol": symbol,
                        "side": "buy" if n % 2 else "sell",
                        "qty": QTY[symbol],
                    }
                ).encode()
                published[sid] = time.perf_counter()
                await publish(SIGNALS_QUEUE, body, message_id=sid)
        deadline = time.monotonic() + 120
        created = taps.events.setdefault("order.created", {})
        while len(created) < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        done = time.perf_counter()
        cpu = meter.per_message(len(created))
    internal = [
        (taps.sent[client_order_id(s, 0)] - taps.received[s]) * 1e3
        for s in published
        if s in taps.received and client_order_id(s, 0) in taps.sent
    ]
    e2e = [(created[s] - published[s]) * 1e3 for s in published if s in created]
    last = max(created.values(), default=done)
    stats: dict[str, float] = {
        "n": float(len(e2e)),
        "throughput_per_s": len(e2e) / (last - start) if e2e else 0.0,
    }
    stats.update({f"internal_{k}_ms": v for k, v in percentiles(internal).items()})
    stats.update({f"e2e_{k}_ms": v for k, v in percentiles(e2e).items()})
    stats.update(cpu)
    return stats


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rates", default="50,200,1000,burst")
    parser.add_argument("--embedded", action="store_true", help="SQLite + in-process bus")
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="service instances (the extra ones as `om run` processes; not with --embedded)",
    )
    args = parser.parse_args()
    if args.embedded and args.instances != 1:
        parser.error("--instances needs the servers: the embedded defaults are one process")
    rates = [None if r == "burst" else float(r) for r in args.rates.split(",")]
    print(f"machine: {machine()}")
    results = {}
    for rate in rates:
        label = "burst" if rate is None else f"{rate:g}/s"
        count = args.count if rate is None or rate >= 200 else min(args.count, int(rate * 20))
        if args.embedded:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
                stats = await one_rate(url, "memory://", rate, count)
        else:
            async with pg_database() as (db_url, _), vhost() as amqp:
                stats = await one_rate(db_url, amqp, rate, count, args.instances)
        results[label] = stats
        print(
            line(
                f"signal→order {'embedded' if args.embedded else 'rabbitmq+postgres'}"
                f"{f' ×{args.instances}' if args.instances > 1 else ''} {label}",
                stats,
            ),
            flush=True,
        )
    if not args.embedded:
        from bench.floor import floor

        async with pg_database() as (_, dsn), vhost() as amqp:
            base = await floor(dsn, amqp, args.count)
        print(line("floor (aio-pika + asyncpg, burst)", base))
        ours = results.get("burst")
        if ours:
            ratio_tp = base["throughput_per_s"] / ours["throughput_per_s"]
            ratio_lat = ours["e2e_p50_ms"] / base["e2e_p50_ms"]
            print(
                f"cost vs floor: throughput {ratio_tp:.2f}x lower, "
                f"burst p50 latency {ratio_lat:.2f}x"
            )


if __name__ == "__main__":
    asyncio.run(main())
