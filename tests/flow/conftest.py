from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import fresh_pg_database, fresh_vhost


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
    with fresh_pg_database() as db, fresh_vhost() as amqp:
        yield db, amqp
