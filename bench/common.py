"""Shared plumbing for the benchmarks: throwaway PostgreSQL databases and RabbitMQ vhosts,
percentiles, and a uniform report line."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

#: How many publishes await their broker confirm at once while a benchmark loads the service.
PUBLISH_WINDOW = 100


@asynccontextmanager
async def publisher(bus: Any) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    """``publish(queue, body, **kw)`` that returns as soon as the message is on its way.

    Waiting for each confirm before the next publish would make the load generator the
    bottleneck (one broker round trip per message). Publishes go out in call order; at most
    ``PUBLISH_WINDOW`` are unconfirmed, and leaving the block waits for every confirm.
    """
    window = asyncio.Semaphore(PUBLISH_WINDOW)
    pending: set[asyncio.Task[None]] = set()

    async def one(queue: str, body: bytes, **kw: Any) -> None:
        try:
            await bus.publish(queue, body, **kw)
        finally:
            window.release()

    async def publish(queue: str, body: bytes, **kw: Any) -> None:
        await window.acquire()
        task = asyncio.create_task(one(queue, body, **kw))
        pending.add(task)
        task.add_done_callback(pending.discard)

    try:
        yield publish
    finally:
        await asyncio.gather(*pending)


PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}


@asynccontextmanager
async def pg_database() -> AsyncIterator[tuple[str, str]]:
    """(SQLAlchemy URL, asyncpg DSN) of a fresh database, dropped afterwards."""
    name = f"om_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(**PG)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield (
            f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}",
            f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{name}",
        )
    finally:
        conn = await asyncpg.connect(**PG)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def _ctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl") or "rabbitmqctl"
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=60)


@asynccontextmanager
async def vhost() -> AsyncIterator[str]:
    name = f"om-bench-{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(_ctl, "add_vhost", name)
    await asyncio.to_thread(_ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        await asyncio.to_thread(_ctl, "delete_vhost", name)


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    if not samples_ms:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(samples_ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1]}


def line(name: str, stats: dict[str, Any]) -> str:
    parts = []
    for key, value in stats.items():
        parts.append(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}")
    return f"{name:<44} " + " ".join(parts)


def machine() -> str:
    return (
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this process (with its children: extra service
    instances), the broker and the database server."""
    totals = {"python": 0.0, "rabbitmq": 0.0, "postgres": 0.0}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
        if int(entry) == me or (int(fields[1]) == me and comm.startswith("python")):
            totals["python"] += used
        elif comm == "beam.smp":
            totals["rabbitmq"] += used
        elif comm == "postgres":
            totals["postgres"] += used
    return totals


class CpuMeter:
    """Who spent the CPU during a measured run: CPU milliseconds per message for this
    process (service and load generator), RabbitMQ and PostgreSQL. On a 2-core machine the
    sum bounds throughput at 2,000 / (ms per message) messages a second."""

    def __init__(self) -> None:
        self._start = _cpu_seconds()
        self._wall = time.perf_counter()

    def per_message(self, count: int) -> dict[str, float]:
        end = _cpu_seconds()
        wall = time.perf_counter() - self._wall
        used = {k: (end[k] - self._start[k]) * 1e3 / max(count, 1) for k in end}
        used["total"] = sum(used.values())
        result = {f"cpu_{k}_ms": v for k, v in used.items()}
        result["cores_busy"] = sum(end[k] - self._start[k] for k in end) / wall
        return result
