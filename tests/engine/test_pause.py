"""Trading paused while the exchange refuses us, and resumed by itself afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from om_core import metrics
from om_core.db import migrate
from om_core.db.session import SessionFactory, create_engine, create_session_factory
from om_core.engine.pause import ExchangePause
from om_core.trading_state import get_state, set_state
from om_plugins import ExchangeUnavailable, TradingState
from tests.conftest import wait_for


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[SessionFactory]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"
    await migrate.upgrade(url)
    engine = create_engine(url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


def ban(seconds: float) -> ExchangeUnavailable:
    return ExchangeUnavailable(
        "forbidden", code="403", reason_code="IP_BANNED", retry_after=seconds
    )


async def state(sessions: SessionFactory) -> tuple[TradingState, str]:
    async with sessions() as session:
        status = await get_state(session)
    return status.state, status.reason


async def test_a_ban_halts_trading_and_it_resumes_as_it_was(sessions: SessionFactory) -> None:
    async with sessions() as session, session.begin():
        await set_state(session, TradingState.REDUCING, "risk review", actor="api-key:x")
    pause = ExchangePause(sessions, pause_after=0.5)
    try:
        await pause.pause_for(ban(0.2))  # short: ridden out by retrying
        assert await state(sessions) == (TradingState.REDUCING, "risk review")
        await pause.pause_for(ban(1.5))
        current, reason = await state(sessions)
        assert current is TradingState.HALTED
        assert "403" in reason and "resumes automatically at" in reason
        assert b"om_exchange_paused_until_timestamp_seconds" in metrics.render()

        async def resumed() -> bool:
            return await state(sessions) == (TradingState.REDUCING, "risk review")

        await wait_for(resumed, timeout=10, message="trading back as it was")
        assert pause.until is None
    finally:
        await pause.stop()


async def test_an_operator_who_changed_the_state_meanwhile_keeps_it(
    sessions: SessionFactory,
) -> None:
    pause = ExchangePause(sessions, pause_after=0.5)
    try:
        await pause.pause_for(ban(1.0))
        assert (await state(sessions))[0] is TradingState.HALTED
        async with sessions() as session, session.begin():
            await set_state(session, TradingState.HALTED, "incident 42", actor="api-key:x")
        await pause.resume()
        assert await state(sessions) == (TradingState.HALTED, "incident 42")
    finally:
        await pause.stop()
