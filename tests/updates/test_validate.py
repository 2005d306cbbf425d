"""check_reports: values the database cannot store, or no exchange could mean, make an order
update invalid (dead-lettered at once with the reason) before anything reaches the database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from om_core.db.types import utcnow
from om_core.updates.validate import check_reports
from om_plugins.reports import InvalidReport
from tests.flow.reports import execution, order

GOOD = order(cid="c-1", oid="o-1", status="new")
FILL = execution(cid="c-1", oid="o-1", qty="0.001", price="50000")


def test_a_sane_update_passes() -> None:
    check_reports([GOOD, FILL])
    now = utcnow()
    check_reports([dataclasses.replace(GOOD, created_at=now, updated_at=now + timedelta(hours=23))])


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("exchange_order_id", "x" * 65, "longer than 64"),
        ("client_order_id", "c" * 37, "longer than 36"),
        ("symbol", "S" * 65, "longer than 64"),
        ("symbol", "", "symbol is empty"),
        ("symbol", "BTC\x00USDT", "control characters"),
        ("exchange_order_id", "o\ud800", "control characters"),
        ("symbol", ["BTCUSDT"], "must be text"),
        ("qty", Decimal("1e20"), "too large"),
        ("qty", Decimal("NaN"), "finite"),
        ("qty", Decimal("0.0000000000000000001"), "decimal places"),
        ("qty", 10**30, "decimal number"),
        ("position_idx", 10**30, "position_idx"),
        ("position_idx", Decimal("1e30"), "position_idx"),
        ("position_idx", True, "position_idx"),
        ("created_at", datetime(1970, 1, 1, tzinfo=UTC), "out of range"),
        ("created_at", datetime(2999, 1, 1, tzinfo=UTC), "out of range"),
        ("updated_at", utcnow() + timedelta(days=2), "ahead of now"),
        ("updated_at", datetime(2026, 1, 1), "no timezone"),
        ("updated_at", "99999999999999999999", "must be a time"),
    ],
)
def test_what_cannot_be_stored_is_invalid(field: str, value: Any, reason: str) -> None:
    with pytest.raises(InvalidReport, match=reason):
        check_reports([GOOD, dataclasses.replace(GOOD, **{field: value})])


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("exec_id", "e" * 97, "longer than 96"),
        ("exec_id", "", "exec_id is empty"),
        ("price", Decimal("-1"), "positive"),
        ("executed_at", utcnow() + timedelta(days=3), "ahead of now"),
    ],
)
def test_executions_likewise(field: str, value: Any, reason: str) -> None:
    with pytest.raises(InvalidReport, match=reason):
        check_reports([dataclasses.replace(FILL, **{field: value})])
