"""The engine's clock: UTC wall-clock time, unless the caller's context set another one.

Everything in the engine that asks "what time is it" (signal age, the decision context's
``now``, the trading day, timestamps of rows) asks :func:`utcnow`. The plugin test kit's
harness runs its engine under a clock a test controls (see ``EngineHarness.set_time``);
the setting is a context variable, so one harness's clock never leaks into another's — or
into the test's own thread.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime

__all__ = ["Clock", "reset_clock", "use_clock", "utcnow"]

#: Returns the current time, timezone-aware UTC.
Clock = Callable[[], datetime]

_CLOCK: ContextVar[Clock | None] = ContextVar("om_clock", default=None)


def utcnow() -> datetime:
    clock = _CLOCK.get()
    return datetime.now(UTC) if clock is None else clock()


def use_clock(clock: Clock | None) -> Token[Clock | None]:
    """Make ``clock`` the time source of the current context (and of tasks it starts)."""
    return _CLOCK.set(clock)


def reset_clock(token: Token[Clock | None]) -> None:
    _CLOCK.reset(token)
