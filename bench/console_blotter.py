"""The console's blotter over 10,000 orders: how long its first page takes.

Loads ``--orders`` orders (and a signal each) into a fresh database, starts ``om run`` on it,
then times, in the same run:

* the server: ``GET /`` (the whole blotter page: orders, positions, fills, signals) over HTTP,
  beside its floors, ``GET /health`` and ``GET /api/v1/orders?limit=50`` (the same query as
  JSON);
* a browser (Debian's chromium): navigation to ``/`` until the page is loaded and its first
  order row is on screen, beside the floor of navigating to the sign-in page (no data).

    .venv/bin/python bench/console_blotter.py                 # SQLite, 10,000 orders
    .venv/bin/python bench/console_blotter.py --servers       # PostgreSQL + RabbitMQ
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import insert

from bench.console_common import chromium, database, om_run, summary
from om_core.db import migrate
from om_core.db.models import Order, SignalRecord, table
from om_core.db.session import create_engine

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]
STATUSES = ["filled"] * 6 + ["cancelled"] * 2 + ["rejected", "new"]


async def load(url: str, count: int) -> None:
    await migrate.upgrade(url)
    engine = create_engine(url)
    now = datetime.now(UTC)
    rng = random.Random(7)
    orders, signals = [], []
    for n in range(count):
        at = now - timedelta(seconds=(count - n) * 30)
        signal_id = f"bench-{n}"
        status = rng.choice(STATUSES)
        qty = Decimal("0.010")
        orders.append(
            {
                "client_order_id": str(uuid.uuid4()),
                "exchange_order_id": str(uuid.uuid4()),
                "signal_id": signal_id,
                "leg": 0,
                "exchange": "paper",
                "category": "linear",
                "symbol": rng.choice(SYMBOLS),
                "side": rng.choice(["buy", "sell"]),
                "order_type": "limit",
                "time_in_force": "GTC",
                "qty": qty,
                "price": Decimal("50000.5"),
                "status": status,
                "filled_qty": qty if status == "filled" else Decimal(0),
                "cum_exec_value": Decimal(0),
                "cum_fee": Decimal(0),
                "reduce_only": False,
                "position_idx": 0,
                "is_external": False,
                "submit_attempts": 1,
                "lookup_misses": 0,
                "created_at": at,
                "updated_at": at,
            }
        )
        signals.append(
            {
                "signal_id": signal_id,
                "symbol": "BTCUSDT",
                "side": "buy",
                "category": "linear",
                "status": "placed",
                "reasons": [],
                "payload": {"signal_id": signal_id},
                "received_at": at,
                "updated_at": at,
            }
        )
    async with engine.begin() as conn:
        for start in range(0, count, 2000):
            await conn.execute(insert(table(Order)), orders[start : start + 2000])
            await conn.execute(insert(table(SignalRecord)), signals[start : start + 2000])
    await engine.dispose()


def time_get(client: httpx.Client, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url, headers={"Accept": "text/html"})
        response.raise_for_status()
        out.append((time.perf_counter() - started) * 1000)
    return out


_TIMING = """() => {
    const n = performance.getEntriesByType("navigation")[0];
    return [n.responseEnd, n.domContentLoadedEventEnd, n.loadEventEnd];
}"""


def browser_times(base: str, n: int) -> dict[str, list[float]]:
    """Navigation Timing, measured by the browser itself (no driver round trips): ms from
    the start of the navigation to the last byte, to the DOM ready (the server-rendered rows
    are on the page), to the load event."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base + "/")  # warm: assets cached, as a returning operator has them
        for _ in range(n):
            for name, path in (("blotter", "/"), ("floor", "/console/login")):
                page.goto("about:blank")
                page.goto(base + path, wait_until="load")
                if name == "blotter":
                    page.locator("#orders-body tr").first.wait_for()
                for label, value in zip(
                    ("response", "dom", "load"), page.evaluate(_TIMING), strict=True
                ):
                    out.setdefault(f"{name} {label}", []).append(float(value))
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--servers", action="store_true", help="PostgreSQL + RabbitMQ")
    args = parser.parse_args()
    with database(args.servers) as (db, broker, folder):
        started = time.perf_counter()
        asyncio.run(load(db, args.orders))
        took = time.perf_counter() - started
        print(f"loaded {args.orders} orders in {took:.1f}s ({db.split(':')[0]})")
        with (
            om_run(db, broker, folder, OM_METRICS_SAMPLE_SECONDS="5") as (base, _pid),
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            time_get(client, "/", 3)  # warm-up
            print(
                summary("server  GET / (blotter, first page)", time_get(client, "/", args.requests))
            )
            print(
                summary(
                    "  floor GET /api/v1/orders?limit=50",
                    time_get(client, "/api/v1/orders?limit=50", args.requests),
                )
            )
            print(summary("  floor GET /health", time_get(client, "/health", args.requests)))
            times = browser_times(base, max(args.requests // 3, 5))
            for label, title in (
                ("blotter response", "browser / last byte received"),
                ("blotter dom", "browser / DOM ready (first rows on the page)"),
                ("blotter load", "browser / load event (scripts, styles)"),
                ("floor response", "  floor /console/login last byte"),
                ("floor dom", "  floor /console/login DOM ready"),
                ("floor load", "  floor /console/login load event"),
            ):
                print(summary(title, times[label]))


if __name__ == "__main__":
    main()
