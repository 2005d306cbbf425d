"""om_core.failures: one classification of a message's failures, and bounded retries.

The database cases are real errors of the real driver (asyncpg under SQLAlchemy) on
PostgreSQL: what the consumers actually see.
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
import time
from typing import Any

import pytest
from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from om_core.failures import describe, is_conflict, is_transient, retry_transient, sqlstate
from om_core.messaging.base import ConsumerActivity, DeadLetter, PublishError
from om_plugins.errors import ExchangeUnavailable, OutcomeUnknown
from tests.conftest import wait_for


async def db_error(url: str, sql: str, **params: Any) -> BaseException:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(sql), params)
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError(f"{sql} did not fail")


def raising(state: str) -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{state}'; END $$"


TRANSIENT_STATES = ["40001", "40P01", "55P03", "57P01", "57P03", "08006", "53300"]
DATA_ERRORS = {
    "numeric overflow": ("SELECT 1e400::float8", {}, "22003"),
    "integer out of range (client side)": ("SELECT CAST(:x AS BIGINT)", {"x": 10**30}, "22000"),
    "NUL in text": ("SELECT CAST(:s AS text)", {"s": "a\x00b"}, "22021"),
    "lone surrogate": ("SELECT CAST(:s AS text)", {"s": "\ud800"}, "22000"),
    "division by zero": ("SELECT 1/0", {}, "22012"),
    "a bug in SQL": ("SELECT nope", {}, "42703"),
}


@pytest.mark.parametrize("state", TRANSIENT_STATES)
async def test_connection_and_concurrency_failures_are_transient(pg_url: str, state: str) -> None:
    exc = await db_error(pg_url, raising(state))
    assert sqlstate(exc) == state
    assert is_transient(exc)
    assert f"[{state}]" in describe(exc)


@pytest.mark.parametrize("case", sorted(DATA_ERRORS))
async def test_what_the_database_cannot_store_is_not_transient(pg_url: str, case: str) -> None:
    sql, params, state = DATA_ERRORS[case]
    exc = await db_error(pg_url, sql, **params)
    assert sqlstate(exc) == state
    assert not is_transient(exc)


async def test_a_string_longer_than_its_column_is_not_transient(pg_url: str) -> None:
    engine = create_async_engine(pg_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (s varchar(2))"))
        exc = await db_error(pg_url, "INSERT INTO t VALUES (:s)", s="abc")
    finally:
        await engine.dispose()
    assert sqlstate(exc) == "22001"
    assert not is_transient(exc)


async def test_a_lost_database_connection_is_transient(pg_url: str) -> None:
    exc = await db_error(pg_url, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert is_transient(exc), describe(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        ConnectionResetError(errno.ECONNRESET, "reset"),
        OSError(errno.EHOSTUNREACH, "no route to host"),
        TimeoutError(),
        AMQPConnectionError("connection closed"),
        ChannelInvalidStateError("closed"),
        PublishError("no confirm"),
        ExchangeUnavailable("down"),
        OutcomeUnknown("timed out after sending"),
        OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
    ],
    ids=repr,
)
def test_known_transient_failures(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EOVERFLOW, "Value too large for defined data type"),
        OverflowError("timestamp out of range for platform time_t"),
        ValueError("year 99999 is out of range"),
        RecursionError(),
        KeyError("x"),
        RuntimeError("a bug"),
        DeadLetter("bad"),
        OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: orders")),
    ],
    ids=repr,
)
def test_everything_else_is_about_the_message(exc: BaseException) -> None:
    assert not is_transient(exc)


async def test_retries_are_bounded_in_time_and_end_in_a_dead_letter() -> None:
    activity = ConsumerActivity()
    tries = 0

    async def down() -> None:
        nonlocal tries
        tries += 1
        raise ConnectionResetError(errno.ECONNRESET, "reset by peer")

    started = time.monotonic()
    task = asyncio.create_task(
        retry_transient(
            down, what="applying", seconds=0.5, tracker=activity, queue="q", initial=0.05
        )
    )
    await wait_for(lambda: activity.in_retry("q") == 1 and activity.oldest_retry_age("q") > 0)
    with pytest.raises(DeadLetter, match=r"outlasted the retry bound.*reset by peer"):
        await task
    assert 0.5 <= time.monotonic() - started < 2
    assert tries >= 3
    assert activity.in_retry("q") == 0


async def test_a_failure_that_is_not_transient_is_not_retried() -> None:
    tries = 0

    async def overflow() -> None:
        nonlocal tries
        tries += 1
        raise OSError(errno.EOVERFLOW, "Value too large for defined data type")

    with pytest.raises(OSError, match="too large"):
        await retry_transient(overflow, what="x", seconds=10)
    assert tries == 1


async def test_a_transient_failure_that_goes_away_is_survived() -> None:
    tries = 0

    async def flaky() -> str:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise TimeoutError
        return "done"

    assert await retry_transient(flaky, what="x", seconds=10, initial=0.01) == "done"
    assert tries == 3


async def test_a_conflict_is_retried_a_few_times_only() -> None:
    tries = 0

    async def conflict() -> None:
        nonlocal tries
        tries += 1
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):
        await retry_transient(conflict, what="x", seconds=10, initial=0.01)
    assert tries == 4
    assert is_conflict(IntegrityError("INSERT", {}, Exception("duplicate key")))
