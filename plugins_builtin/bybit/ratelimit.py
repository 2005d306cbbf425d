"""Client-side rate limiting per Bybit endpoint group, so requests wait here instead of
collecting ``10006 Too many visits``.

Bybit counts requests per UID and endpoint in a *rolling* one-second window
(rate-limit.mdx). A classic token bucket that refills continuously and holds ``limit``
tokens would admit almost twice the limit within one rolling second (a full burst, then the
refill), so each group is a bucket of ``limit`` tokens where a spent token comes back exactly
one window after it was spent: never more than ``limit`` requests in any window.

The server's view corrects ours: every response carries ``X-Bapi-Limit`` (the limit),
``X-Bapi-Limit-Status`` (requests left in the window) and ``X-Bapi-Limit-Reset-Timestamp``.
Fewer requests left than we think (another process uses the same key) spends the difference;
a lower limit than configured lowers ours; a 10006 or an exhausted window blocks the group
until the reset time. Waiting is ``asyncio.sleep``, in arrival order, never blocking the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

__all__ = ["LimitHeaders", "RateLimiter", "RollingBucket", "parse_limit_headers"]

#: Never trust a reset time further out than this (clock skew, a malformed header).
MAX_BLOCK_SECONDS = 10.0


class LimitHeaders:
    """The ``X-Bapi-Limit*`` headers of one response; absent ones are ``None``."""

    __slots__ = ("limit", "remaining", "reset_at")

    def __init__(self, limit: int | None, remaining: int | None, reset_at: float | None) -> None:
        self.limit = limit
        self.remaining = remaining
        #: Wall-clock (epoch) seconds.
        self.reset_at = reset_at

    def retry_after(self, now_wall: float | None = None) -> float | None:
        """Seconds until the window resets, or ``None`` when the server did not say."""
        if self.reset_at is None:
            return None
        now = time.time() if now_wall is None else now_wall
        return min(max(self.reset_at - now, 0.0), MAX_BLOCK_SECONDS)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def parse_limit_headers(headers: Mapping[str, str] | None) -> LimitHeaders:
    """Read the headers case-insensitively (requests gives a case-insensitive dict, but a
    plain mapping may come from elsewhere)."""
    if not headers:
        return LimitHeaders(None, None, None)
    lowered = {str(k).lower(): v for k, v in headers.items()}
    reset_ms = _int(lowered.get("x-bapi-limit-reset-timestamp"))
    return LimitHeaders(
        limit=_int(lowered.get("x-bapi-limit")),
        remaining=_int(lowered.get("x-bapi-limit-status")),
        reset_at=reset_ms / 1000 if reset_ms is not None else None,
    )


class RollingBucket:
    """At most ``limit`` acquisitions in any ``window`` seconds."""

    def __init__(
        self,
        name: str,
        limit: int,
        *,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError(f"{name}: limit must be at least 1 (got {limit})")
        self.name = name
        self.configured_limit = limit
        self.limit = limit
        self.window = window
        self._clock = clock
        #: When each spent token comes back, oldest first.
        self._returns: deque[float] = deque()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    def _expire(self, now: float) -> None:
        while self._returns and self._returns[0] <= now:
            self._returns.popleft()

    def headroom(self) -> float:
        """Requests that could be sent right now without waiting."""
        now = self._clock()
        if now < self._blocked_until:
            return 0.0
        self._expire(now)
        return float(max(self.limit - len(self._returns), 0))

    def _wait_time(self, now: float) -> float:
        if now < self._blocked_until:
            return self._blocked_until - now
        self._expire(now)
        if len(self._returns) < self.limit:
            return 0.0
        # Over the limit (e.g. it was just lowered): wait until enough tokens came back.
        return self._returns[len(self._returns) - self.limit] - now

    async def acquire(self) -> None:
        """Take one token, waiting (without blocking the loop) until one is free."""
        # The lock makes waiters go in arrival order; only one of them sleeps at a time.
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._wait_time(now)
                if wait <= 0:
                    self._returns.append(now + self.window)
                    return
                await asyncio.sleep(wait)

    def observe(self, headers: LimitHeaders, *, throttled: bool = False) -> None:
        """Align with what the server reported after a request of this group."""
        now = self._clock()
        self._expire(now)
        if headers.limit is not None and 0 < headers.limit < self.limit:
            self.limit = headers.limit
        if headers.remaining is not None:
            used_by_server = (headers.limit or self.limit) - headers.remaining
            unknown = max(used_by_server - len(self._returns), 0)
            if unknown:
                # Requests we did not make (or no longer count): they leave the server's
                # window when it says it resets, at the latest one window from now.
                back = now + self.window
                after = headers.retry_after()
                if after is not None:
                    back = now + min(after, self.window)
                self._returns.extend([back] * unknown)
                self._returns = deque(sorted(self._returns))
        if throttled or headers.remaining == 0:
            retry_after = headers.retry_after()
            if retry_after is None:
                retry_after = self.window if throttled else 0.0
            self.block_for(retry_after)

    def block_for(self, seconds: float) -> None:
        if seconds > 0:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)


class RateLimiter:
    """One :class:`RollingBucket` per endpoint group."""

    def __init__(self, limits: Mapping[str, int], *, window: float = 1.0) -> None:
        self._buckets = {name: RollingBucket(name, n, window=window) for name, n in limits.items()}

    @property
    def groups(self) -> Iterable[str]:
        return self._buckets.keys()

    def bucket(self, group: str) -> RollingBucket:
        try:
            return self._buckets[group]
        except KeyError:
            raise LookupError(f"no rate-limit group {group!r}") from None

    async def acquire(self, group: str) -> None:
        await self.bucket(group).acquire()

    def observe(self, group: str, headers: LimitHeaders, *, throttled: bool = False) -> None:
        self.bucket(group).observe(headers, throttled=throttled)

    def headroom(self) -> dict[str, float]:
        """Requests each group could send right now without waiting."""
        return {name: bucket.headroom() for name, bucket in self._buckets.items()}
