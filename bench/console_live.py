"""Live updates: how long an order event takes to reach the console's page, at 50 signals/s.

Starts ``om run``, opens the blotter in Debian's chromium, then submits ``--rate`` signals a
second for ``--seconds`` through ``POST /api/v1/signals`` (market orders on the paper
exchange, so each makes an ``order.created`` and an ``order.filled`` event). For every order
event the page records the time from the event's ``occurred_at`` (stamped by the service
when the change was made, before its commit) to its row being placed in the page. In the
same run a plain SSE reader (Python, no browser) records the same for the bytes reaching it:
the floor of the path, without the browser's parsing and rendering.

    .venv/bin/python bench/console_live.py                 # SQLite + in-process bus
    .venv/bin/python bench/console_live.py --servers       # PostgreSQL + RabbitMQ
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import threading
import time
from datetime import datetime

import httpx

from bench.console_common import chromium, cpu_seconds, database, om_run, summary


def sse_reader(base: str, stop: threading.Event, out: list[float]) -> None:
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=60)) as client,
        client.stream("GET", base + "/console/events") as response,
    ):
        event = ""
        for line in response.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "order":
                data = json.loads(line[6:])
                occurred = datetime.fromisoformat(data["occurred_at"]).timestamp()
                out.append((time.time() - occurred) * 1000)


async def submit(base: str, rate: float, seconds: float) -> tuple[int, list[float]]:
    """Signals at ``rate`` per second, paced on a clock (not after each answer)."""
    count = int(rate * seconds)
    answers: list[float] = []
    refused: list[int] = []
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def one(n: int) -> None:
            body = {
                "signal_id": f"live-{n}-{time.time_ns()}",
                "symbol": "BTCUSDT",
                "side": "buy" if n % 2 == 0 else "sell",
                "qty": "0.001",
            }
            started = time.perf_counter()
            response = await client.post("/api/v1/signals", json=body)
            answers.append((time.perf_counter() - started) * 1000)
            if response.status_code != 202:
                refused.append(response.status_code)

        started = time.perf_counter()
        tasks = []
        for n in range(count):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - started
    print(f"submitted {count} signals in {took:.1f}s ({count / took:.1f}/s)", end="")
    print(f"; not accepted: {len(refused)} {sorted(set(refused))}" if refused else "")
    return count - len(refused), answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--servers", action="store_true", help="PostgreSQL + RabbitMQ")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with (
        database(args.servers) as (db, broker, folder),
        om_run(db, broker, folder, OM_PLUGIN_PAPER_RANDOM_WALK="false") as (base, pid),
    ):
        stop = threading.Event()
        reader_ms: list[float] = []
        reader = threading.Thread(target=sse_reader, args=(base, stop, reader_ms), daemon=True)
        reader.start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(base + "/")
            page.locator("#live-status.on").wait_for()
            # Its own thread and loop: Playwright's sync API keeps a loop on this one.
            cpu_before = cpu_seconds(pid)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                run = pool.submit(asyncio.run, submit(base, args.rate, args.seconds))
                count, answers = run.result()
            deadline = time.monotonic() + 30
            while page.evaluate("window.omLive.received") < 2 * count:
                if time.monotonic() > deadline:
                    break
                page.wait_for_timeout(200)
            cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / count
            page_ms = page.evaluate("window.omLive.latencies")
            received = page.evaluate("window.omLive.received")
            browser.close()
        stop.set()
        print(f"order events shown in the page: {received} (2 per signal expected: {2 * count})")
        print(summary("page: event → row in the page", page_ms))
        print(summary("  floor: event → SSE bytes at a Python reader", reader_ms))
        print(summary("  POST /api/v1/signals answered", answers))
        print(
            f"om run CPU per signal (HTTP, engine, paper exchange, relay, console): "
            f"{cpu_ms:.1f} ms, i.e. one core keeps up with {1000 / cpu_ms:.0f} signals/s; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )


if __name__ == "__main__":
    main()
