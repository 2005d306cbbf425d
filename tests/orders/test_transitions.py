"""The order state machine, exhaustively: every (current, reported) pair has a defined verdict."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from om_core.orders.status import IN_DOUBT, TERMINAL, OrderStatus
from om_core.orders.transitions import RANK, Action, decide, normalize

S = OrderStatus
ZERO, HALF, ALL = Decimal(0), Decimal("0.5"), Decimal(1)
LIVE = [s for s in S if s not in TERMINAL]
#: What an exchange may report: every status but the engine's own three.
REPORTABLE = sorted(set(S) - IN_DOUBT - {S.SUBMITTED}, key=lambda s: s.value)


def test_a_cancel_after_fills_is_partially_filled_cancelled() -> None:
    assert normalize(S.CANCELLED, HALF) is S.PARTIALLY_FILLED_CANCELLED
    assert normalize(S.CANCELLED, ZERO) is S.CANCELLED
    assert normalize(S.FILLED, HALF) is S.FILLED


def test_every_live_status_has_a_rank() -> None:
    assert set(RANK) == set(LIVE)


# (current, reported) → expected action for reports without fills, newer than what we have.
EXPECTED: dict[tuple[S, S], Action] = {}
for current, reported in itertools.product(list(S), REPORTABLE):
    if current in TERMINAL:
        if reported == current or (current is S.FILLED and reported in TERMINAL):
            action = Action.IGNORE
        else:
            action = Action.QUARANTINE
    elif reported in TERMINAL:
        action = Action.APPLY
    elif current in IN_DOUBT or RANK[reported] > RANK[current]:
        action = Action.APPLY
    else:
        action = Action.IGNORE
    EXPECTED[(current, reported)] = action


@pytest.mark.parametrize(("current", "reported"), sorted(EXPECTED, key=str), ids=str)
def test_table(current: S, reported: S) -> None:
    verdict = decide(current, ZERO, 1000, reported, ZERO, 2000)
    assert verdict.action is EXPECTED[(current, reported)], verdict
    if verdict.action is Action.APPLY:
        assert verdict.status == reported
    else:
        assert verdict.status == current


@pytest.mark.parametrize("current", list(S), ids=str)
@pytest.mark.parametrize("reported", REPORTABLE, ids=str)
def test_an_older_report_without_new_fills_changes_nothing(current: S, reported: S) -> None:
    verdict = decide(current, ZERO, 2000, reported, ZERO, 1000)
    if current in TERMINAL:
        assert verdict.action is Action.IGNORE
    elif current not in IN_DOUBT and reported not in TERMINAL:
        assert verdict.action is Action.IGNORE


def test_fills_only_grow_and_always_count() -> None:
    # A live order: an older-looking report with more filled qty still applies its fill.
    verdict = decide(S.NEW, ZERO, 2000, S.PARTIALLY_FILLED, HALF, 1000)
    assert (verdict.action, verdict.status) == (Action.APPLY, S.PARTIALLY_FILLED)
    # A "New" report that carries fills means partially filled.
    verdict = decide(S.SUBMITTED, ZERO, None, S.NEW, HALF, None)
    assert verdict.status is S.PARTIALLY_FILLED
    # Fewer fills than we know is never a move backwards.
    verdict = decide(S.PARTIALLY_FILLED, HALF, 1000, S.PARTIALLY_FILLED, ZERO, 2000)
    assert verdict.action is Action.IGNORE


def test_cancel_then_fill_is_taken() -> None:
    verdict = decide(S.CANCELLED, ZERO, 1000, S.FILLED, ALL, 1001)
    assert (verdict.action, verdict.status) == (Action.APPLY, S.FILLED)
    verdict = decide(S.CANCELLED, ZERO, 1000, S.PARTIALLY_FILLED, HALF, 1001)
    assert (verdict.action, verdict.status) == (Action.APPLY, S.PARTIALLY_FILLED_CANCELLED)


def test_a_filled_order_growing_again_is_quarantined() -> None:
    verdict = decide(S.FILLED, ALL, 1000, S.FILLED, Decimal(2), 1001)
    assert verdict.action is Action.QUARANTINE


def test_a_cancel_report_after_fills_is_a_partial_cancel() -> None:
    verdict = decide(S.PARTIALLY_FILLED, HALF, 1000, S.CANCELLED, ZERO, 1001)
    assert (verdict.action, verdict.status) == (Action.APPLY, S.PARTIALLY_FILLED_CANCELLED)
