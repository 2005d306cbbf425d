"""Benchmark 1: signal → order, and the floor it is compared with.

    python -m bench.signal_to_order [--count 2000] [--rates 50,200,1000,burst] [--embedded]
    python -m bench.signal_to_order --instances 1,2,3 [--partitions 8] [--symbols 24]

For each rate it publishes ``count`` signals to ``model-service.trading_signals`` and
measures (a) the service's internal time from message received to exchange request sent,
(b) publish → ``order.created`` received on ``order-manager.order_events``, and throughput.
With RabbitMQ + PostgreSQL (default) it then runs the floor — bare aio-pika + asyncpg doing
the same I/O — and prints our cost as a ratio of it.

``--instances`` runs the service as that many ``om run`` processes instead (each count in
turn, on a fresh database and vhost), with ``OM_PARTITIONS=--partitions`` (``0``: the
instances compete for every message), and reports throughput and CPU per signal for each
count; there is no internal-time tap then.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import CpuMeter, line, machine, percentiles, pg_database, publisher, vhost
from bench.harness import Taps, processes, service
from om_core.events.payloads import dumps
from om_core.messaging import MessageBus
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.orders.client_id import client_order_id

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
QTY = {"BTCUSDT": "0.001", "ETHUSDT": "0.01", "SOLUSDT": "0.1"}


def markets(count: int) -> tuple[list[str], dict[str, str]]:
    """``count`` symbols: the paper exchange's three, then made-up ones (``X01USDT``…)
    priced at 1 with a quantity step of 1 (their settings go into ``paper_env``)."""
    symbols = SYMBOLS[:count] + [f"X{n:02d}USDT" for n in range(1, count - len(SYMBOLS) + 1)]
    return symbols, {**QTY, **{s: "10" for s in symbols if s not in QTY}}


def paper_env(symbols: list[str]) -> dict[str, str]:
    extra = [s for s in symbols if s not in QTY]
    if not extra:
        return {}
    rules = {"tick_size": "0.0001", "qty_step": "1", "min_qty": "1", "max_qty": "1000000"}
    return {
        "OM_PLUGIN_PAPER_INSTRUMENTS": json.dumps(dict.fromkeys(extra, rules)),
        "OM_PLUGIN_PAPER_PRICES": json.dumps(dict.fromkeys(extra, "1")),
    }


async def publish_load(
    bus: MessageBus, rate: float | None, count: int, symbols: list[str], qty: dict[str, str]
) -> tuple[dict[str, float], float]:
    """Publish ``count`` signals round-robin over ``symbols``; (publish times, start)."""
    run = uuid.uuid4().hex[:6]
    published: dict[str, float] = {}
    start = time.perf_counter()
    async with publisher(bus) as publish:
        for n in range(count):
            if rate:
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            symbol = symbols[n % len(symbols)]
            sid = f"bench-{run}-{n}"
            body = dumps(
                {
                    "signal_id": sid,
                    "symbol": symbol,
                    "side": "buy" if n % 2 else "sell",
                    "qty": qty[symbol],
                }
            ).encode()
            published[sid] = time.perf_counter()
            await publish(SIGNALS_QUEUE, body, message_id=sid)
    return published, start


async def await_created(taps: Taps, count: int, within: float = 180) -> dict[str, float]:
    deadline = time.monotonic() + within
    created = taps.events.setdefault("order.created", {})
    while len(created) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return created


async def instances_rate(
    db_url: str,
    broker_url: str,
    rate: float | None,
    count: int,
    *,
    instances: int,
    partitions: int,
    symbols: int,
) -> dict[str, float]:
    """One run with ``instances`` ``om run`` processes."""
    names, qty = markets(symbols)
    env = {"OM_PARTITIONS": str(partitions), **paper_env(names)}
    async with processes(db_url, broker_url, instances, env) as (taps, bus):
        meter = CpuMeter()
        published, start = await publish_load(bus, rate, count, names, qty)
        created = await await_created(taps, count)
        cpu = meter.per_message(len(created))
    e2e = [(created[s] - published[s]) * 1e3 for s in published if s in created]
    last = max(created.values(), default=time.perf_counter())
    stats: dict[str, float] = {
        "n": float(len(e2e)),
        "throughput_per_s": len(e2e) / (last - start) if e2e else 0.0,
    }
    stats.update({f"e2e_{k}_ms": v for k, v in percentiles(e2e).items()})
    stats.update(cpu)
    return stats


async def one_rate(
    db_url: str, broker_url: str, rate: float | None, count: int, instances: int = 1
) -> dict[str, float]:
    async with service(db_url, broker_url, instances=instances) as (_svc, taps, bus):
        meter = CpuMeter()
        published, start = await publish_load(bus, rate, count, SYMBOLS, QTY)
        created = await await_created(taps, count)
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
        help="instance counts, e.g. 1,2,3: each runs as that many `om run` processes "
        "(not with --embedded)",
    )
    parser.add_argument(
        "--partitions",
        default="8",
        help="OM_PARTITIONS with --instances; a list (0,8) runs each (0: no partitions)",
    )
    parser.add_argument(
        "--symbols", type=int, default=24, help="symbols the signals rotate over, --instances"
    )
    args = parser.parse_args()
    if args.embedded and args.instances:
        parser.error("--instances needs the servers: the embedded defaults are one process")
    rates = [None if r == "burst" else float(r) for r in args.rates.split(",")]
    print(f"machine: {machine()}")
    if args.instances:
        await instance_counts(args, rates)
        return
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
                stats = await one_rate(db_url, amqp, rate, count)
        results[label] = stats
        print(
            line(
                f"signal→order {'embedded' if args.embedded else 'rabbitmq+postgres'} {label}",
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


async def instance_counts(args: argparse.Namespace, rates: list[float | None]) -> None:
    counts = [int(n) for n in args.instances.split(",")]
    partitionings = [int(n) for n in args.partitions.split(",")]
    for partitions in partitionings:
        for rate in rates:
            label = "burst" if rate is None else f"{rate:g}/s"
            count = args.count if rate is None or rate >= 200 else min(args.count, int(rate * 20))
            for instances in counts:
                async with pg_database() as (db_url, _), vhost() as amqp:
                    stats = await instances_rate(
                        db_url,
                        amqp,
                        rate,
                        count,
                        instances=instances,
                        partitions=partitions,
                        symbols=args.symbols,
                    )
                per_instance = stats["throughput_per_s"] / instances
                print(
                    line(
                        f"signal→order ×{instances} partitions={partitions} {label}",
                        {**stats, "throughput_per_instance": per_instance},
                    ),
                    flush=True,
                )
    from bench.floor import floor

    async with pg_database() as (_, dsn), vhost() as amqp:
        base = await floor(dsn, amqp, args.count)
    print(line("floor (aio-pika + asyncpg, burst)", base), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
