"""Money stays exact, time stays UTC and uniqueness holds, through real rows on both databases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import Context, Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from om_core.db.migrate import upgrade
from om_core.db.models import Fill, Order, SignalRecord
from om_core.db.session import SessionFactory, create_engine, create_session_factory
from om_core.db.types import strip_zeros


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[SessionFactory]:
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


def make_order(**fields: Any) -> Order:
    values: dict[str, Any] = {
        "client_order_id": str(uuid.uuid4()),
        "exchange": "paper",
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "order_type": "Limit",
        "qty": Decimal("0.001"),
        "status": "new",
    }
    values.update(fields)
    return Order(**values)


async def save(sessions: SessionFactory, *rows: Any) -> None:
    async with sessions() as session:
        session.add_all(rows)
        await session.commit()


async def load_order(sessions: SessionFactory, order_id: int | None) -> Order:
    # A new session: the value comes from the database, not from the identity map.
    async with sessions() as session:
        order = await session.get(Order, order_id)
    assert order is not None
    return order


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(Decimal("0.000000000000000001"), id="18-places"),
        # 38 significant digits: NUMERIC(38, 18) to the brim, beyond a float and beyond
        # the default decimal context (28 digits).
        pytest.param(Decimal("12345678901234567890.123456789012345678"), id="38-digits"),
        pytest.param(Decimal("-98765432109876543210.987654321098765432"), id="38-digits-neg"),
        pytest.param(Decimal("0.1"), id="not-binary"),
        pytest.param(Decimal("100"), id="integral"),
    ],
)
async def test_decimal_round_trips_exactly(sessions: SessionFactory, value: Decimal) -> None:
    order = make_order(qty=value, price=value, cum_fee=value)
    await save(sessions, order)

    loaded = await load_order(sessions, order.id)
    for column in ("qty", "price", "cum_fee"):
        stored = getattr(loaded, column)
        assert isinstance(stored, Decimal)
        assert stored == value, column


async def test_decimal_defaults_read_back_as_decimal_zero(sessions: SessionFactory) -> None:
    order = make_order()
    await save(sessions, order)

    loaded = await load_order(sessions, order.id)
    assert loaded.filled_qty == Decimal(0)
    assert isinstance(loaded.filled_qty, Decimal)
    assert loaded.price is None


async def test_float_is_refused(sessions: SessionFactory) -> None:
    with pytest.raises(sa.exc.StatementError) as excinfo:
        await save(sessions, make_order(qty=0.1))
    assert isinstance(excinfo.value.orig, TypeError)
    assert "never float" in str(excinfo.value.orig)


async def test_timestamps_come_back_as_aware_utc(sessions: SessionFactory) -> None:
    moscow = timezone(timedelta(hours=3))
    created = datetime(2026, 3, 1, 15, 30, 45, 123456, tzinfo=moscow)
    order = make_order(created_at=created, submitted_at=created)
    await save(sessions, order)

    loaded = await load_order(sessions, order.id)
    for stored in (loaded.created_at, loaded.submitted_at, loaded.updated_at):
        assert stored is not None
        assert stored.tzinfo is not None
        assert stored.utcoffset() == timedelta(0)
    assert loaded.created_at == created
    assert loaded.created_at.replace(tzinfo=None) == datetime(2026, 3, 1, 12, 30, 45, 123456)


async def test_naive_datetime_is_refused(sessions: SessionFactory) -> None:
    with pytest.raises(sa.exc.StatementError) as excinfo:
        await save(sessions, make_order(created_at=datetime(2026, 3, 1, 12, 0)))
    assert isinstance(excinfo.value.orig, TypeError)


async def test_client_order_id_is_unique(sessions: SessionFactory) -> None:
    await save(sessions, make_order(client_order_id="om-1"))
    with pytest.raises(sa.exc.IntegrityError):
        await save(sessions, make_order(client_order_id="om-1"))


async def test_signal_id_is_unique(sessions: SessionFactory) -> None:
    await save(sessions, SignalRecord(signal_id="sig-1", status="processing"))
    with pytest.raises(sa.exc.IntegrityError):
        await save(sessions, SignalRecord(signal_id="sig-1", status="placed"))


async def test_fill_exec_id_is_unique(sessions: SessionFactory) -> None:
    order = make_order()
    await save(sessions, order)
    order_id = order.id
    assert order_id is not None

    def fill() -> Fill:
        return Fill(
            exec_id="exec-1",
            order_id=order_id,
            symbol="BTCUSDT",
            category="linear",
            side="Buy",
            qty=Decimal("0.001"),
            price=Decimal("65000.5"),
        )

    await save(sessions, fill())
    with pytest.raises(sa.exc.IntegrityError):
        await save(sessions, fill())


async def test_different_client_order_ids_are_both_kept(sessions: SessionFactory) -> None:
    """Guards the uniqueness tests: two distinct orders do not trip any constraint."""
    first, second = make_order(), make_order()
    await save(sessions, first, second)
    async with sessions() as session:
        count = await session.scalar(sa.select(sa.func.count()).select_from(Order))
    assert count == 2


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=18, min_value=-(10**20), max_value=10**20
    )
)
def test_stripping_zeros_gives_the_same_digits_whatever_was_stripped_before(
    value: Decimal,
) -> None:
    # strip_zeros remembers results by value; an equal value with other trailing zeros (or a
    # zero of the other sign) must still get its own exact, shortest form.
    padded = value.quantize(Decimal("1E-18"), context=Context(prec=60))
    for candidate in (padded, value, -value):
        expected = _reference_strip(candidate)
        got = strip_zeros(candidate)
        assert (str(got), got.is_signed()) == (str(expected), expected.is_signed())


def _reference_strip(value: Decimal) -> Decimal:
    """Trailing zeros dropped by string surgery, independently of the implementation."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return Decimal(text)
