"""The placement hot path writes ``orders`` rows without the ORM: they must be whole."""

from __future__ import annotations

from dataclasses import fields

from om_core.db.models import Order
from om_core.orders import rows


def test_an_intent_row_sets_every_column_an_order_has() -> None:
    # A column added to Order must be given a value for intents too (or it is silently NULL).
    stamps = {"created_at", "updated_at"}
    written = {f.name for f in fields(rows.Intent)} | set(rows._NEW_ORDER) | stamps
    assert written == set(Order.model_fields)


def test_an_intent_row_holds_what_a_new_order_object_would() -> None:
    defaults = Order(
        client_order_id="c",
        exchange="paper",
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        order_type="Market",
        qty=1,
        status="pending_submit",
    )
    for name, value in rows._NEW_ORDER.items():
        assert getattr(defaults, name) == value, name
