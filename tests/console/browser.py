"""A real browser (Debian's chromium, driven by Playwright) against a real ``om run``.

The browser is the system's: Playwright never downloads one here. When chromium or Playwright
is missing the browser tests are skipped, or fail under ``OM_REQUIRE_SERVICES=1`` (CI), like
the tests that need PostgreSQL or RabbitMQ. ``make test`` installs chromium first when it can
(scripts/ensure-browser.sh).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.services import services_required

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"


def _missing(message: str) -> None:
    if services_required():
        pytest.fail(message + " and OM_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def chromium_executable() -> str:
    """Debian's chromium (or ``OM_CHROMIUM``); skips or fails the test when there is none."""
    path = os.environ.get("OM_CHROMIUM") or shutil.which("chromium")
    if not path:
        _missing("chromium is not installed (scripts/ensure-browser.sh installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright for Python is not installed")
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_thread(action: Callable[[], Awaitable[T]]) -> T:
    """Run async code (database seeding, a broker publish) from a sync browser test.

    In its own thread with its own loop: Playwright's sync API keeps an event loop on this one.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(action())).result(timeout=60)  # type: ignore[arg-type]


@dataclass
class OmRun:
    """``om run`` in a subprocess, as an operator starts it."""

    base_url: str
    database_url: str
    broker_url: str
    mode: str
    process: subprocess.Popen[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def url(self, path: str = "/") -> str:
        return self.base_url + path


def _wait_ready(url: str, process: subprocess.Popen[str], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"om run exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"om run was not ready within {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def om_run(
    workdir: Path, database_url: str, broker_url: str, mode: str, **extra: str
) -> Iterator[OmRun]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    env.update(
        {
            "OM_DATABASE_URL": database_url,
            "OM_BROKER_URL": broker_url,
            "OM_API_PORT": str(port),
            "OM_DB_AUTO_MIGRATE": "true",
            # Prices stay put, and nothing reconciles behind the tests' back.
            "OM_PLUGIN_PAPER_RANDOM_WALK": "false",
            "OM_SYNC_INTERVAL": "0",
            "OM_POSITION_SNAPSHOT_INTERVAL": "0",
            "OM_METRICS_SAMPLE_SECONDS": "1",
            "OM_SHUTDOWN_GRACE_SECONDS": "3",
            **extra,
        }
    )
    log = workdir / f"om-run-{mode}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "om_core.cli", "run"],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    run = OmRun(f"http://127.0.0.1:{port}", database_url, broker_url, mode, process, log, env)
    try:
        _wait_ready(run.base_url, process, log)
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Shots:
    """Screenshots of one test, saved under ``artifacts/screenshots/<test>/``."""

    def __init__(self, name: str) -> None:
        self.folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def __call__(self, page: Any, step: str, *, full_page: bool = True) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path
