"""Latency of ``GET /api/v1/orders`` over a million orders on PostgreSQL.

Creates a fresh database, migrates it, loads ``--rows`` orders with COPY (20 symbols, mixed
statuses, one year of timestamps), starts the service on it (paper exchange, in-process bus,
not consuming) and times the API in-process through httpx's ASGI transport, so the figures
are the application and the database, not a network. Prints p50/p99 per scenario, then drops
the database (``--keep`` leaves it).

    .venv/bin/python bench/api_list.py            # 1,000,000 rows, 200 requests per scenario

PostgreSQL is reached as ``OM_TEST_PG_*`` says (default postgres@127.0.0.1:5432, db ``test``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text

from api.main import create_app
from api.pagination import encode_cursor
from om_core.config import load_settings
from om_core.db import migrate
from om_core.metrics import StateGauges
from om_core.service import Service

PG_HOST = os.environ.get("OM_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("OM_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("OM_TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("OM_TEST_PG_DB", "test")
KEY = "bench-read-key-0001"

SYMBOLS = [
    "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "AVAXUSDT",
    "LINKUSDT", "DOTUSDT", "TRXUSDT", "MATICUSDT", "LTCUSDT", "BCHUSDT", "ATOMUSDT",
    "NEARUSDT", "APTUSDT", "ARBUSDT", "OPUSDT", "SUIUSDT", "TONUSDT",
]  # fmt: skip
# BTC and ETH dominate, as they do in practice.
SYMBOL_WEIGHTS = [30, 20, 10] + [40 / 17] * 17
TERMINAL = ["filled", "cancelled", "rejected", "partially_filled_cancelled", "deactivated"]
TERMINAL_WEIGHTS = [62, 25, 6, 5, 2]
#: Only recent orders can still be open; as in production, a few hundred at most.
OPEN = ["new", "partially_filled", "untriggered"]
OPEN_WINDOW = 2_000

COLUMNS = [
    "client_order_id", "exchange_order_id", "signal_id", "leg", "exchange", "category",
    "symbol", "side", "order_type", "time_in_force", "qty", "price", "reduce_only",
    "position_idx", "status", "filled_qty", "cum_exec_value", "cum_fee", "avg_fill_price",
    "is_external", "submit_attempts", "lookup_misses", "created_at", "updated_at",
]  # fmt: skip


def _records(rows: int, start: datetime, span: timedelta, seed: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    step = span / rows
    for n in range(rows):
        # Mostly in id order, with jitter: ids and times correlate as they do when written live.
        created = start + step * n + timedelta(milliseconds=rng.randint(0, 2000))
        symbol = rng.choices(SYMBOLS, SYMBOL_WEIGHTS)[0]
        if n >= rows - OPEN_WINDOW and rng.random() < 0.2:
            status = rng.choice(OPEN)
        else:
            status = rng.choices(TERMINAL, TERMINAL_WEIGHTS)[0]
        is_limit = rng.random() < 0.6
        qty = Decimal(rng.randint(1, 5000)).scaleb(-3)
        price = Decimal(rng.randint(1_000_000, 9_000_000)).scaleb(-2)
        filled = qty if status == "filled" else Decimal(0)
        yield (
            str(uuid.UUID(int=rng.getrandbits(128))),
            str(uuid.UUID(int=rng.getrandbits(128))),
            f"sig-{n}" if rng.random() < 0.97 else None,
            0,
            "paper",
            "linear",
            symbol,
            rng.choice(("buy", "sell")),
            "limit" if is_limit else "market",
            "GTC" if is_limit else "IOC",
            qty,
            price if is_limit else None,
            False,
            0,
            status,
            filled,
            filled * price,
            (filled * price * Decimal("0.00055")).quantize(Decimal("1e-8")),
            price if filled else None,
            False,
            1,
            0,
            created,
            created + timedelta(seconds=1),
        )


async def _load(dsn: str, rows: int, seed: int) -> float:
    started = time.perf_counter()
    start = datetime.now(UTC) - timedelta(days=365)
    conn = await asyncpg.connect(dsn)
    try:
        batch: list[tuple[Any, ...]] = []
        for record in _records(rows, start, timedelta(days=365), seed):
            batch.append(record)
            if len(batch) == 100_000:
                await conn.copy_records_to_table("orders", records=batch, columns=COLUMNS)
                batch.clear()
        if batch:
            await conn.copy_records_to_table("orders", records=batch, columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE orders")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def _timed(
    count: int, call: Callable[[], Awaitable[httpx.Response]]
) -> tuple[list[float], int]:
    for _ in range(min(20, count)):  # warm caches and connections
        (await call()).raise_for_status()
    durations = []
    items = 0
    for _ in range(count):
        began = time.perf_counter()
        response = await call()
        durations.append(time.perf_counter() - began)
        response.raise_for_status()
        items = len(response.json()["items"])
    return durations, items


def _row(name: str, durations: list[float], items: int) -> str:
    ms = sorted(d * 1000 for d in durations)
    p50 = statistics.median(ms)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98]
    return f"| {name} | {items} | {p50:.1f} | {p99:.1f} | {max(ms):.1f} |"


async def run(args: argparse.Namespace) -> None:
    name = f"om_bench_{uuid.uuid4().hex[:10]}"
    admin = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}"
    dsn = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    server_version = conn.get_server_version()
    await conn.close()
    service: Service | None = None
    try:
        await migrate.upgrade(url)
        load_seconds = await _load(dsn, args.rows, args.seed)
        print(f"loaded {args.rows:,} orders in {load_seconds:.1f}s", flush=True)

        env = {
            "OM_DATABASE_URL": url,
            "OM_BROKER_URL": "memory://",
            "OM_API_KEYS": f"{KEY}:read",
            "OM_POSITION_SNAPSHOT_INTERVAL": "0",
            "OM_SYNC_INTERVAL": "0",
            "OM_PLUGIN_PAPER_RANDOM_WALK": "false",
        }
        # Startup reconciliation reports every open order the paper exchange never saw.
        logging.getLogger("om_core").setLevel(logging.ERROR)
        service = Service(load_settings(env=env), env=env)
        await service.start(consume=False)
        app = create_app(service)

        async with service.sessions() as session:
            connection = await session.connection()
            deep = (
                await connection.execute(
                    text(
                        "SELECT created_at, id FROM orders ORDER BY created_at DESC, id DESC "
                        "OFFSET :skip LIMIT 1"
                    ),
                    {"skip": args.deep - 1},
                )
            ).one()
            window_end = (
                await connection.execute(
                    text("SELECT max(created_at) - interval '180 days' FROM orders")
                )
            ).scalar_one()
        deep_cursor = encode_cursor("o", deep[0], deep[1])
        window = {
            "created_from": (window_end - timedelta(days=7)).isoformat(),
            "created_to": window_end.isoformat(),
        }

        transport = httpx.ASGITransport(app=app)
        headers = {"X-API-Key": KEY}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:

            def get(**params: Any) -> Callable[[], Awaitable[httpx.Response]]:
                return lambda: client.get("/api/v1/orders", params=params)

            scenarios: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
                ("first page (limit 100)", get()),
                (f"deep page after {args.deep:,} rows (cursor)", get(cursor=deep_cursor)),
                ("first page, limit 500", get(limit=500)),
                ("symbol=ETHUSDT & status=filled", get(symbol="ETHUSDT", status="filled")),
                (
                    "symbol=ETHUSDT & status=filled, deep cursor",
                    get(symbol="ETHUSDT", status="filled", cursor=deep_cursor),
                ),
                (
                    "status=new & status=partially_filled (open)",
                    get(status=["new", "partially_filled"]),
                ),
                ("symbol=SOLUSDT & 7-day window 180 days back", get(symbol="SOLUSDT", **window)),
                ("signal_id=sig-123456", get(signal_id="sig-123456")),
            ]
            lines = [
                "| scenario | items | p50 ms | p99 ms | max ms |",
                "|---|---|---|---|---|",
            ]
            for label, call in scenarios:
                durations, items = await _timed(args.requests, call)
                lines.append(_row(label, durations, items))
                print(lines[-1], flush=True)

        gauges = StateGauges(service.sessions, service.bus, min_interval=0)
        refreshes = []
        for _ in range(min(args.requests, 20)):
            began = time.perf_counter()
            await gauges.refresh()
            refreshes.append(time.perf_counter() - began)
        lines.append(
            _row("/metrics state refresh (orders by status, outbox, queues)", refreshes, 0)
        )
        print(lines[-1], flush=True)

        print()
        print(
            f"{args.rows:,} orders, {args.requests} sequential requests per scenario after 20 "
            f"warm-up; PostgreSQL {server_version.major}.{server_version.minor}; "
            f"Python {platform.python_version()}; {os.cpu_count()} CPUs; {platform.machine()}"
        )
        print("\n".join(lines))
    finally:
        if service is not None:
            await service.stop()
        if not args.keep:
            conn = await asyncpg.connect(admin)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()
        else:
            print(f"kept database {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--deep", type=int, default=900_000, help="rows before the deep page")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    args.deep = min(args.deep, args.rows - 100)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
