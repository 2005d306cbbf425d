"""Bybit's HTTP 403 and 429: a pause during which nothing is sent at all.

Bybit answers HTTP 403 when an IP breached its limit (600 requests per 5 s) and bans the IP
for 10 minutes or more; every request during the ban prolongs it. HTTP 429 is its
system-level frequency protection. Either puts the client into a *ban*: until it ends,
every call fails at once with :class:`~om_plugins.ExchangeUnavailable` (reason
``IP_BANNED`` or ``RATE_LIMITED``, ``retry_after`` = the time left) without a byte on the
wire. The pause starts at ``initial`` seconds (at least a minute) and doubles with each ban
in a row up to ``maximum``, plus up to 25 % jitter so several clients do not come back in
step. The first request after the pause is the probe: a success ends the series, another
403/429 starts a longer pause.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from om_plugins import ExchangeUnavailable, ReasonCode

__all__ = ["BanGuard", "BanState"]

log = logging.getLogger(__name__)

_JITTER = 0.25


@dataclass(frozen=True, slots=True)
class BanState:
    """A ban in force: why, until when (UTC), and how many bans in a row so far."""

    reason_code: ReasonCode
    http_status: int
    until: datetime
    seconds_left: float
    strikes: int


class BanGuard:
    """The ban state of one client; safe to use from the event loop and worker threads."""

    def __init__(
        self,
        *,
        initial: float = 60.0,
        maximum: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if initial < 60 or maximum < initial:
            raise ValueError("a ban lasts at least 60 s, and maximum >= initial")
        self.initial = initial
        self.maximum = maximum
        #: Monotonic seconds; replaceable in tests.
        self.clock = clock
        self.wall = wall
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._until = 0.0
        self._since = 0.0
        self._strikes = 0
        self._status = 0
        self._reason = ReasonCode.IP_BANNED

    def state(self) -> BanState | None:
        """The ban in force, or ``None``."""
        with self._lock:
            left = self._until - self.clock()
            if left <= 0:
                return None
            return BanState(
                reason_code=self._reason,
                http_status=self._status,
                until=datetime.fromtimestamp(self.wall(), UTC) + timedelta(seconds=left),
                seconds_left=left,
                strikes=self._strikes,
            )

    def check(self, what: str) -> float:
        """Raise :class:`ExchangeUnavailable` while banned; else the (monotonic) time now,
        to pass to :meth:`trip` if the request is answered with a 403/429."""
        with self._lock:
            now = self.clock()
            left = self._until - now
            if left <= 0:
                return now
            status, reason = self._status, self._reason
        raise ExchangeUnavailable(
            f"{what}: not sent: Bybit answered HTTP {status} "
            f"({'IP banned' if reason is ReasonCode.IP_BANNED else 'rate limited'}); nothing is "
            f"sent for another {left:.0f}s",
            code=str(status),
            reason_code=reason,
            retry_after=left,
        )

    def trip(self, status: int, started: float) -> float:
        """A request sent at ``started`` got HTTP ``status`` (403/429): (re)start the pause.
        Returns the seconds left. Answers to requests that were already in flight when the
        pause began do not lengthen it."""
        reason = ReasonCode.IP_BANNED if status == 403 else ReasonCode.RATE_LIMITED
        with self._lock:
            now = self.clock()
            if self._until > now and started < self._since:
                return self._until - now
            self._strikes += 1
            base = min(self.initial * 2.0 ** (self._strikes - 1), self.maximum)
            pause = base * (1 + self._rng.uniform(0, _JITTER))
            self._since = now
            self._until = now + pause
            self._status = status
            self._reason = reason
            strikes = self._strikes
        log.error(
            "bybit: HTTP %d (%s); sending nothing for %.0fs (ban %d in a row)",
            status,
            reason.value,
            pause,
            strikes,
        )
        return pause

    def succeeded(self) -> None:
        """A request was answered normally: the next ban starts from ``initial`` again."""
        with self._lock:
            if self._strikes and self._until <= self.clock():
                log.info("bybit: requests are answered again after %d ban(s)", self._strikes)
                self._strikes = 0
