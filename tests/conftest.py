from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.services import fresh_pg_database, fresh_vhost

T = TypeVar("T")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database (no tables)."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both databases the service supports, one after the other."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"
    else:
        with fresh_pg_database() as url:
            yield url


@pytest.fixture(params=["embedded", "servers"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(database URL, broker URL): SQLite + in-process bus, then PostgreSQL + RabbitMQ."""
    if request.param == "embedded":
        yield f"sqlite+aiosqlite:///{tmp_path / 'om.db'}", "memory://"
    else:
        with fresh_pg_database() as db, fresh_vhost() as amqp:
            yield db, amqp


@pytest.fixture
def server_urls() -> Iterator[tuple[str, str]]:
    """(database URL, broker URL) of a fresh PostgreSQL database and RabbitMQ vhost."""
    with fresh_pg_database() as db, fresh_vhost() as amqp:
        yield db, amqp


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """URL of a fresh RabbitMQ virtual host."""
    with fresh_vhost() as url:
        yield url


async def wait_for(
    condition: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Await ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)
