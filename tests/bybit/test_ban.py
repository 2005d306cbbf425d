"""HTTP 403/429 pauses: at least a minute, doubling, with jitter, and nothing sent meanwhile."""

from __future__ import annotations

import random

import pytest

from om_plugins import ExchangeUnavailable, ReasonCode
from plugins_builtin.bybit.ban import BanGuard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(clock: Clock) -> BanGuard:
    return BanGuard(initial=60, maximum=600, clock=clock, rng=random.Random(7))


def test_a_403_bans_for_at_least_a_minute_and_every_call_fails_at_once(
    guard: BanGuard, clock: Clock
) -> None:
    started = guard.check("create x")
    pause = guard.trip(403, started)
    assert 60 <= pause <= 75  # 60 s plus up to 25 % jitter, never less
    with pytest.raises(ExchangeUnavailable) as raised:
        guard.check("create y")
    assert raised.value.reason_code == ReasonCode.IP_BANNED
    assert raised.value.code == "403"
    assert raised.value.retry_after == pytest.approx(pause)
    assert "not sent" in raised.value.message
    state = guard.state()
    assert state is not None and state.strikes == 1 and state.http_status == 403
    clock.now += pause - 1
    with pytest.raises(ExchangeUnavailable) as later:
        guard.check("create z")
    assert later.value.retry_after == pytest.approx(1)
    clock.now += 1.01
    guard.check("probe")
    assert guard.state() is None


def test_bans_in_a_row_double_up_to_the_maximum_and_a_success_resets(
    guard: BanGuard, clock: Clock
) -> None:
    pauses = []
    for _ in range(6):
        pauses.append(guard.trip(403, guard.check("x")))
        clock.now += pauses[-1] + 0.01
    bases = [60, 120, 240, 480, 600, 600]
    for pause, base in zip(pauses, bases, strict=True):
        assert base <= pause <= base * 1.25
    guard.succeeded()
    assert 60 <= guard.trip(403, guard.check("x")) <= 75


def test_answers_to_requests_sent_before_the_ban_do_not_lengthen_it(
    guard: BanGuard, clock: Clock
) -> None:
    early = guard.check("a")
    clock.now += 0.1
    first = guard.trip(403, guard.check("b"))
    clock.now += 0.1
    assert guard.trip(403, early) == pytest.approx(first - 0.1)
    state = guard.state()
    assert state is not None and state.strikes == 1


def test_429_is_rate_limited(guard: BanGuard) -> None:
    guard.trip(429, guard.check("x"))
    with pytest.raises(ExchangeUnavailable) as raised:
        guard.check("y")
    assert raised.value.reason_code == ReasonCode.RATE_LIMITED
    state = guard.state()
    assert state is not None and state.reason_code is ReasonCode.RATE_LIMITED


def test_a_success_during_a_ban_does_not_end_it(guard: BanGuard) -> None:
    guard.trip(403, guard.check("x"))
    guard.succeeded()  # an answer to a request sent before the ban
    assert guard.state() is not None


def test_a_ban_shorter_than_a_minute_is_refused() -> None:
    with pytest.raises(ValueError, match="60"):
        BanGuard(initial=10)
