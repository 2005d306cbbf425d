"""Fixtures for the console's browser tests: a real ``om run`` (embedded defaults, then
PostgreSQL + RabbitMQ) and Debian's chromium driven by Playwright."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.console.browser import OmRun, Shots, chromium_executable, om_run
from tests.services import fresh_pg_database, fresh_vhost

READ_KEY = "console-read-key-1234"
TRADE_KEY = "console-trade-key-5678"
API_KEYS = f"{READ_KEY}:read,{TRADE_KEY}:trade"
TRADE_ACTOR = "api-key:" + hashlib.sha256(TRADE_KEY.encode()).hexdigest()[:8]
#: A Bybit secret the plugins page must never show.
BYBIT_SECRET = "bybit-secret-never-shown"


@pytest.fixture(scope="module", params=["embedded", "servers"])
def om(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OmRun]:
    """A running ``om run`` with a read and a trade key, shared by a module's tests."""
    chromium_executable()  # skip (or fail in CI) before starting anything
    workdir = tmp_path_factory.mktemp(f"om-{request.param}")
    extra = {"OM_API_KEYS": API_KEYS, "OM_BYBIT_API_SECRET": BYBIT_SECRET}
    if request.param == "embedded":
        url = f"sqlite+aiosqlite:///{workdir / 'om.db'}"
        with om_run(workdir, url, "memory://", "embedded", **extra) as run:
            yield run
    else:
        with fresh_pg_database() as db, fresh_vhost() as amqp:
            with om_run(workdir, db, amqp, "servers", **extra) as run:
                yield run


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium, one per test (Playwright's sync API keeps a loop on this thread
    while it runs, so it is not held across the module's service setups)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)
