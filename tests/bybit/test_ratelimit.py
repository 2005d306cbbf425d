"""The rolling-window budget per endpoint group, and how server headers correct it."""

from __future__ import annotations

import asyncio
import time

from plugins_builtin.bybit.ratelimit import (
    LimitHeaders,
    RateLimiter,
    RollingBucket,
    parse_limit_headers,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_at_most_limit_per_window() -> None:
    clock = Clock()
    bucket = RollingBucket("create", 3, clock=clock)
    for _ in range(3):
        await bucket.acquire()
    assert bucket.headroom() == 0
    waiter = asyncio.create_task(bucket.acquire())
    done, _ = await asyncio.wait({waiter}, timeout=0.05)
    assert not done  # the budget is spent and the (fake) clock stands still
    clock.now += 1.0  # tokens come back one window after they were spent
    await asyncio.wait_for(waiter, timeout=5)
    assert bucket.headroom() == 2


def test_server_headers_lower_the_budget() -> None:
    clock = Clock()
    bucket = RollingBucket("create", 10, clock=clock)
    # Another client on the same key used 6 of this second's 10 requests.
    bucket.observe(LimitHeaders(limit=10, remaining=4, reset_at=None))
    assert bucket.headroom() == 4
    # A lower limit on the server wins over the configured one.
    bucket.observe(LimitHeaders(limit=5, remaining=None, reset_at=None))
    assert bucket.limit == 5 and bucket.headroom() == 0
    clock.now += 1.0
    assert bucket.headroom() == 5


def test_a_throttle_blocks_until_the_reset_time() -> None:
    clock = Clock()
    bucket = RollingBucket("create", 10, clock=clock)
    bucket.observe(LimitHeaders(10, 0, time.time() + 2.0), throttled=True)
    assert bucket.headroom() == 0
    clock.now += 2.5
    assert bucket.headroom() > 0


def test_headers_are_read_case_insensitively() -> None:
    parsed = parse_limit_headers(
        {"x-bapi-limit": "10", "X-Bapi-Limit-Status": "9", "X-BAPI-LIMIT-RESET-TIMESTAMP": "5000"}
    )
    assert (parsed.limit, parsed.remaining, parsed.reset_at) == (10, 9, 5.0)
    assert parse_limit_headers(None).retry_after() is None


def test_headroom_per_group() -> None:
    limiter = RateLimiter({"create.linear": 10, "order.realtime": 50})
    assert limiter.headroom() == {"create.linear": 10.0, "order.realtime": 50.0}
