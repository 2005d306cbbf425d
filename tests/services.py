"""Access to the real PostgreSQL and RabbitMQ the integration tests run against.

Each test gets its own PostgreSQL database and its own RabbitMQ virtual host, so tests never
see each other's rows or queues, while queue names stay exactly the production ones.
When a server is unreachable the test is skipped, or fails when ``OM_REQUIRE_SERVICES=1``
(CI), so a missing service can never turn the suite silently green.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_HOST = os.environ.get("OM_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("OM_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("OM_TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("OM_TEST_PG_DB", "test")
AMQP_HOST = os.environ.get("OM_TEST_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("OM_TEST_AMQP_PORT", "5672"))


def services_required() -> bool:
    return os.environ.get("OM_REQUIRE_SERVICES", "") not in ("", "0", "false")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if services_required():
        pytest.fail(message + " and OM_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def _psql(sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_ADMIN_DB)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty database; yields its SQLAlchemy URL and drops it afterwards."""
    require("PostgreSQL", PG_HOST, PG_PORT)
    name = f"om_test_{uuid.uuid4().hex[:12]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.fail("rabbitmqctl is needed to create test virtual hosts", pytrace=False)
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def fresh_vhost() -> Iterator[str]:
    """A new RabbitMQ virtual host; yields its AMQP URL and deletes it afterwards."""
    require("RabbitMQ", AMQP_HOST, AMQP_PORT)
    vhost = f"om-test-{uuid.uuid4().hex[:12]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)
