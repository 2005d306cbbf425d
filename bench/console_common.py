"""Shared plumbing of the console benchmarks: ``om run`` in a subprocess on a throwaway
database (SQLite, or a fresh PostgreSQL database and RabbitMQ vhost), and Debian's chromium."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _servers() -> Iterator[tuple[str, str]]:
    sys.path.insert(0, str(ROOT))
    from tests.services import fresh_pg_database, fresh_vhost

    with fresh_pg_database() as db, fresh_vhost() as amqp:
        yield db, amqp


@contextmanager
def database(servers: bool) -> Iterator[tuple[str, str, Path]]:
    """``(database URL, broker URL, work folder)``, removed afterwards."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="om-bench-")))
        if servers:
            db, amqp = stack.enter_context(_servers())
        else:
            db, amqp = f"sqlite+aiosqlite:///{folder / 'om.db'}", "memory://"
        yield db, amqp, folder


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process used so far (from ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def om_run(db: str, broker: str, folder: Path, **extra: str) -> Iterator[tuple[str, int]]:
    """``om run`` until the block ends; yields its base URL and process id."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    env.update(
        OM_DATABASE_URL=db,
        OM_BROKER_URL=broker,
        OM_API_PORT=str(port),
        OM_DB_AUTO_MIGRATE="true",
        OM_SYNC_INTERVAL="0",
        OM_LOG_LEVEL="WARNING",
        **extra,
    )
    log = (folder / "om.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "om_core.cli", "run"], cwd=folder, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"om run exited: {(folder / 'om.log').read_text()[-2000:]}")
            try:
                if httpx.get(base + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("om run did not become ready")
            time.sleep(0.2)
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def chromium() -> str:
    path = os.environ.get("OM_CHROMIUM") or shutil.which("chromium")
    if not path:
        raise SystemExit("chromium is not installed (scripts/ensure-browser.sh)")
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(round(q * (len(ordered) - 1)), len(ordered) - 1)
    return ordered[index]


def summary(name: str, values: list[float], unit: str = "ms") -> str:
    return (
        f"{name:<46} n={len(values):<5} p50={percentile(values, 0.5):8.1f} "
        f"p95={percentile(values, 0.95):8.1f} p99={percentile(values, 0.99):8.1f} "
        f"max={max(values) if values else float('nan'):8.1f} {unit}"
    )
