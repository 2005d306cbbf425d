"""The floor: the same I/O as the service with no framework at all.

Consume a signal with aio-pika, write the equivalent rows (signal, order, relationship,
outbox event) in one asyncpg transaction, publish an event with a publisher confirm, ack.
Run on its own with ``python -m bench.floor [--count 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import aio_pika
import asyncpg

from bench.common import CpuMeter, line, machine, percentiles, pg_database, publisher, vhost
from om_core.config import Settings
from om_core.db import migrate

IN, OUT = "floor.signals", "floor.events"
#: The floor consumes with the service's default prefetch (it makes no difference to it).
SERVICE_PREFETCH: int = Settings.model_fields["prefetch"].default


async def floor(
    dsn: str, amqp_url: str, count: int, prefetch: int = SERVICE_PREFETCH
) -> dict[str, float]:
    await migrate.upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=10)
    conn = await aio_pika.connect_robust(amqp_url)
    consume_ch = await conn.channel()
    await consume_ch.set_qos(prefetch_count=prefetch)
    publish_ch = await conn.channel(publisher_confirms=True)
    args = {"x-queue-type": "quorum"}
    in_q = await consume_ch.declare_queue(IN, durable=True, arguments=args)
    await publish_ch.declare_queue(OUT, durable=True, arguments=args)
    out_q = await consume_ch.declare_queue(OUT, durable=True, arguments=args)
    published: dict[str, float] = {}
    done: dict[str, float] = {}
    finished = asyncio.Event()

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        data = json.loads(message.body)
        now = datetime.now(UTC)
        async with pool.acquire() as db, db.transaction():
            await db.execute(
                "INSERT INTO signals (signal_id, symbol, side, category, status, reasons, payload,"
                " received_at, updated_at) VALUES ($1,$2,$3,'linear','placed','[]',$4,$5,$5)",
                data["signal_id"],
                data["symbol"],
                data["side"],
                json.dumps(data),
                now,
            )
            order_id = await db.fetchval(
                "INSERT INTO orders (client_order_id, signal_id, leg, exchange, category, symbol,"
                " side, order_type, qty, reduce_only, position_idx, status, filled_qty,"
                " cum_exec_value, cum_fee, is_external, submit_attempts, lookup_misses,"
                " created_at, updated_at) VALUES ($1,$2,0,'paper','linear',$3,$4,'market',"
                " $5::numeric,false,0,'submitted',0,0,0,false,1,0,$6,$6) RETURNING id",
                str(uuid.uuid4()),
                data["signal_id"],
                data["symbol"],
                data["side"],
                data["qty"],
                now,
            )
            await db.execute(
                "INSERT INTO signal_order_relationships (signal_id, order_id, leg, created_at)"
                " VALUES ($1,$2,0,$3)",
                data["signal_id"],
                order_id,
                now,
            )
            event = json.dumps({"event_id": str(uuid.uuid4()), "signal_id": data["signal_id"]})
            await db.execute(
                "INSERT INTO outbox (event_id, event_type, queue, payload, created_at, attempts)"
                " VALUES ($1,'order.created',$2,$3,$4,1)",
                str(uuid.uuid4()),
                OUT,
                event,
                now,
            )
        await publish_ch.default_exchange.publish(
            aio_pika.Message(event.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=OUT,
        )
        await message.ack()

    async def on_event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        done[json.loads(message.body)["signal_id"]] = time.perf_counter()
        await message.ack()
        if len(done) >= count:
            finished.set()

    await in_q.consume(handle)
    await out_q.consume(on_event)

    class _Load:
        """The load generator the service benchmarks use, on the floor's own channel."""

        @staticmethod
        async def publish(queue: str, body: bytes) -> None:
            await publish_ch.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue,
            )

    meter = CpuMeter()
    start = time.perf_counter()
    async with publisher(_Load()) as publish:
        for n in range(count):
            sid = f"floor-{n}"
            published[sid] = time.perf_counter()
            body = json.dumps(
                {"signal_id": sid, "symbol": "BTCUSDT", "side": "buy", "qty": "0.001"}
            )
            await publish(IN, body.encode())
    await asyncio.wait_for(finished.wait(), 120)
    cpu = meter.per_message(len(done))
    last = max(done.values())
    await conn.close()
    await pool.close()
    e2e = [(done[s] - published[s]) * 1e3 for s in published if s in done]
    stats: dict[str, float] = {"n": float(len(e2e)), "throughput_per_s": len(e2e) / (last - start)}
    stats.update({f"e2e_{k}_ms": v for k, v in percentiles(e2e).items()})
    stats.update(cpu)
    return stats


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    async with pg_database() as (_, dsn), vhost() as amqp:
        print(line("floor (aio-pika + asyncpg, burst)", await floor(dsn, amqp, args.count)))


if __name__ == "__main__":
    asyncio.run(main())
