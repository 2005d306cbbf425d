"""Trading paused while the exchange refuses this service.

An IP ban (Bybit answers HTTP 403 for ten minutes or more) or heavy throttling makes every
order fail until it ends, and hammering the exchange meanwhile prolongs it. The adapter
stops sending requests; the engine halts trading for that long, with the reason and the
time it resumes in the trading state (so ``GET /api/v1/trading-state``, the console and the
``trading_state.changed`` events say why), and restores the previous state afterwards —
unless someone changed it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from om_core import metrics
from om_core.db.models import TradingStateRow
from om_core.db.session import SessionFactory
from om_core.db.types import utcnow
from om_core.trading_state import get_state, set_state
from om_plugins.errors import ExchangeUnavailable
from om_plugins.reports import ReasonCode
from om_plugins.types import TradingState

__all__ = ["ExchangePause"]

log = logging.getLogger(__name__)

#: Waits shorter than this are ridden out by retrying; longer ones pause trading.
PAUSE_AFTER_SECONDS = 30.0
_SAME_BAN = timedelta(seconds=1)
#: Refusals that say how long the exchange will keep refusing us.
THROTTLED = frozenset({ReasonCode.RATE_LIMITED.value, ReasonCode.IP_BANNED.value})
ACTOR = "engine"


class ExchangePause:
    def __init__(
        self,
        factory: SessionFactory,
        *,
        on_committed: Callable[[], None] = lambda: None,
        pause_after: float = PAUSE_AFTER_SECONDS,
    ) -> None:
        self._factory = factory
        self._notify = on_committed
        self._pause_after = pause_after
        self.until: datetime | None = None
        self._reason = ""
        self._previous: tuple[TradingState, str] | None = None
        self._resume: asyncio.Task[None] | None = None

    async def pause_for(self, exc: ExchangeUnavailable) -> None:
        """Pause if ``exc`` is a ban or throttling that says how long it lasts, whichever
        call met it: the first request to meet a ban is as often a read as an order."""
        if exc.reason_code in THROTTLED and exc.retry_after is not None:
            await self.pause(exc.code or exc.reason_code, exc.retry_after, exc.message)

    async def pause(self, code: str, seconds: float, message: str) -> None:
        """The exchange refuses requests for ``seconds``; halt trading until then."""
        if seconds < self._pause_after:
            return
        until = utcnow() + timedelta(seconds=seconds)
        # The same ban met again ends when it ended (give or take the clocks' drift): a
        # longer pause only when the exchange refuses us for longer.
        if self.until is not None and until <= self.until + _SAME_BAN:
            return
        self.until = until
        metrics.set_exchange_pause(code, until.timestamp())
        reason = (
            f"exchange refuses requests ({code}: {message}); trading resumes automatically "
            f"at {until.isoformat(timespec='seconds')}"
        )
        async with self._factory() as session, session.begin():
            current = await get_state(session)
            if self._previous is None:
                if current.state is TradingState.HALTED:
                    log.warning("exchange pause while already halted (%s)", current.reason)
                    self._previous = (current.state, current.reason)
                    self._reason = current.reason
                else:
                    self._previous = (current.state, current.reason)
            if current.state is not TradingState.HALTED or current.reason == self._reason:
                await set_state(session, TradingState.HALTED, reason, actor=ACTOR)
                self._reason = reason
        log.error("trading paused: %s", reason)
        self._committed()
        if self._resume is not None:
            self._resume.cancel()
        self._resume = asyncio.create_task(self._resume_at(until), name="exchange-pause")

    async def _resume_at(self, until: datetime) -> None:
        await asyncio.sleep(max(0.0, (until - utcnow()).total_seconds()))
        await self.resume()

    async def resume(self) -> None:
        """The pause is over: restore what the state was, unless it was changed meanwhile."""
        previous, self._previous = self._previous, None
        code_until, self.until = self.until, None
        metrics.EXCHANGE_PAUSED_UNTIL.clear()
        if previous is None or code_until is None:
            return
        async with self._factory() as session, session.begin():
            row = await session.get(TradingStateRow, 1)
            if row is None or row.state != TradingState.HALTED or row.reason != self._reason:
                return  # an operator (or another instance) has taken over
            await set_state(session, previous[0], previous[1], actor=ACTOR)
        log.warning("exchange pause over: trading state back to %s", previous[0].value)
        self._committed()

    def _committed(self) -> None:
        self._notify()

    async def stop(self) -> None:
        task, self._resume = self._resume, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
