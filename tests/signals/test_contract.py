from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from om_core.signals.contract import InvalidSignal, parse_signal
from om_plugins import Category, OrderType, Side, TimeInForce


def test_minimal_signal_gets_defaults() -> None:
    s = parse_signal(b'{"signal_id": "s1", "symbol": "BTCUSDT", "side": "buy"}')
    assert (s.signal_id, s.symbol, s.side) == ("s1", "BTCUSDT", Side.BUY)
    assert s.category is Category.LINEAR
    assert s.strength == Decimal(1)
    assert s.order_type is None and s.qty is None and s.price is None


def test_full_signal_numbers_as_numbers_or_strings_never_float() -> None:
    s = parse_signal(
        b'{"signal_id": "s2", "symbol": "ethusdt", "side": "Sell", "category": "spot",'
        b' "strength": 0.35, "order_type": "LIMIT", "price": "3012.37", "qty": 0.1,'
        b' "notional": 301.237, "reduce_only": true, "time_in_force": "PostOnly",'
        b' "take_profit": 2900.1, "stop_loss": "3100", "strategy_id": "mm-1",'
        b' "model_version": "v7", "created_at": "2026-11-25T10:00:00Z",'
        b' "metadata": {"atr": 12.5}}'
    )
    assert s.symbol == "ETHUSDT" and s.side is Side.SELL and s.category is Category.SPOT
    assert s.strength == Decimal("0.35")
    assert s.order_type is OrderType.LIMIT and s.time_in_force is TimeInForce.POST_ONLY
    # 0.1 as a float is 0.1000000000000000055…; parsed exactly it is 0.1.
    assert s.qty == Decimal("0.1") and str(s.notional) == "301.237"
    assert s.take_profit == Decimal("2900.1") and s.stop_loss == Decimal(3100)
    assert s.reduce_only is True
    assert s.created_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert s.metadata == {"atr": Decimal("12.5")}


def test_epoch_milliseconds_and_unknown_fields_kept_in_metadata() -> None:
    s = parse_signal(
        b'{"signal_id": "s3", "symbol": "SOLUSDT", "side": "BUY",'
        b' "created_at": 1764064800000, "venue_hint": "x", "metadata": {"k": 1}}'
    )
    assert s.created_at == datetime(2025, 11, 25, 10, 0, tzinfo=UTC)
    assert s.metadata == {"k": 1, "extra": {"venue_hint": "x"}}


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (b"not json", ["not valid JSON"]),
        (b"\xff\xfe", ["not UTF-8"]),
        (b"[1, 2]", ["must be a JSON object"]),
        (b'{"symbol": "BTCUSDT", "side": "buy"}', ["signal_id: required"]),
        (b'{"signal_id": "", "symbol": "BTCUSDT", "side": "buy"}', ["signal_id"]),
        (
            b'{"signal_id": "' + b"x" * 129 + b'", "symbol": "BTCUSDT", "side": "buy"}',
            ["signal_id"],
        ),
        (b'{"signal_id": "a", "side": "buy"}', ["symbol: required"]),
        (b'{"signal_id": "a", "symbol": "BTCUSDT", "side": "long"}', ["side: one of buy, sell"]),
        (
            b'{"signal_id": "a", "symbol": "BTCUSDT", "side": "buy", "qty": -1, "price": "abc",'
            b' "strength": 2, "created_at": "yesterday", "reduce_only": "yes"}',
            [
                "qty: must be greater than 0",
                "price: not a number",
                "strength: must be between",
                "created_at:",
                "reduce_only:",
            ],
        ),
        (b'{"signal_id": "a", "symbol": "BTCUSDT", "side": "buy", "qty": NaN}', ["not valid JSON"]),
        (b"[" * 100_000, ["nested too deeply"]),
        (
            b'{"signal_id": "a", "symbol": "BTCUSDT", "side": "buy", "price": "Infinity"}',
            ["finite"],
        ),
    ],
)
def test_invalid_signals_list_every_problem(body: bytes, fragments: list[str]) -> None:
    with pytest.raises(InvalidSignal) as info:
        parse_signal(body)
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text


def test_the_id_is_kept_on_an_invalid_signal_when_readable() -> None:
    with pytest.raises(InvalidSignal) as info:
        parse_signal(b'{"signal_id": "keep-me", "symbol": "BTCUSDT"}')
    assert info.value.signal_id == "keep-me"


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_invalid_signal(body: bytes) -> None:
    try:
        parse_signal(body)
    except InvalidSignal:
        pass


@given(st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e12"), places=8))
def test_decimal_strings_round_trip_exactly(qty: Decimal) -> None:
    body = f'{{"signal_id": "h", "symbol": "BTCUSDT", "side": "buy", "qty": {qty}}}'.encode()
    assert parse_signal(body).qty == qty
