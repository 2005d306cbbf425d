from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from om_core.signals.contract import (
    DEFAULT_LIMITS,
    MAX_DEPTH,
    MAX_ID_LENGTH,
    InvalidSignal,
    MessageTooLarge,
    SignalLimits,
    parse_message,
    parse_signal,
    signal_born,
    timing_rejection,
)
from om_core.signals.store import json_safe
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


# -- bounds at the edge (issue 14: observations 3, 4, 6) ---------------------------------------


def _body(**fields: object) -> bytes:
    return json.dumps({"signal_id": "b1", "symbol": "BTCUSDT", "side": "buy", **fields}).encode()


def _nested(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


def _problems(body: bytes, limits: SignalLimits = DEFAULT_LIMITS) -> InvalidSignal:
    with pytest.raises(InvalidSignal) as info:
        parse_message(body, limits)
    return info.value


def test_a_message_over_the_size_limit_is_refused_before_it_is_decoded() -> None:
    body = _body(metadata={"blob": "x" * (10 * 1024 * 1024)})
    error = _problems(body)
    assert isinstance(error, MessageTooLarge)
    assert error.code == "MESSAGE_TOO_LARGE" and not error.storable
    assert "more than the maximum of 65536 (OM_MAX_MESSAGE_BYTES)" in str(error)
    # The limit is the deployment's.
    small = SignalLimits(max_bytes=2048)
    assert isinstance(_problems(_body(metadata={"blob": "x" * 4096}), small), MessageTooLarge)
    assert parse_message(_body(metadata={"blob": "x" * 1000}), small)[0].signal_id == "b1"


@pytest.mark.parametrize("levels", [31, 300, 900])
def test_json_deeper_than_32_levels_is_refused(levels: int) -> None:
    # The signal object is level 1 and metadata level 2: 30 more levels of objects fit.
    body = _body(metadata=_nested(levels))
    if levels <= MAX_DEPTH - 1:
        assert parse_message(body)[0].metadata
        return
    error = _problems(body)
    assert "nested deeper than 32 levels" in str(error)
    assert not error.storable and error.signal_id == "b1"


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"metadata": {"note": "\ud800"}}, "$.'metadata'.'note'"),
        ({"metadata": {"\udfff": 1}}, "$.'metadata'"),
        ({"metadata": {"list": ["ok", "a\x00b"]}}, "$.'metadata'.'list'[1]"),
        ({"strategy_id": "\x00"}, "$.'strategy_id'"),
        ({"unknown_field": "\ud83d"}, "$.'unknown_field'"),
    ],
)
def test_nul_and_lone_surrogates_are_refused_anywhere(
    fields: dict[str, object], where: str
) -> None:
    error = _problems(_body(**fields))
    assert "NUL or a lone surrogate" in str(error) and where in str(error)
    assert not error.storable and error.signal_id == "b1"


@pytest.mark.parametrize("signal_id", ["a\x00b", "\ud800", "x" * 129])
def test_a_signal_id_the_column_cannot_hold_is_refused_and_not_kept(signal_id: str) -> None:
    body = json.dumps({"signal_id": signal_id, "symbol": "BTCUSDT", "side": "buy"}).encode()
    error = _problems(body)
    assert error.signal_id is None  # never recorded under an id the database cannot store
    assert "signal_id" in str(error)


def test_the_longest_signal_id_fits() -> None:
    assert parse_message(_body(signal_id="x" * MAX_ID_LENGTH))[0].signal_id == "x" * 128


@pytest.mark.parametrize(
    "symbol",
    ["BTCUSDT\n", "BTCUſDT", "BTCUSDT ", " BTCUSDT", "BTC-USDT", "ＢＴＣＵＳＤＴ", "B" * 33, "B"],
)
def test_symbols_are_matched_whole_against_ascii(symbol: str) -> None:
    assert "symbol:" in str(_problems(_body(symbol=symbol)))


def test_ascii_symbols_are_still_case_insensitive() -> None:
    assert parse_message(_body(symbol="btcUSDT"))[0].symbol == "BTCUSDT"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1e30", "below 10^20"),
        ("100000000000000000000", "below 10^20"),
        ("0.0000000000000000001", "at most 18 decimal places"),
        ("1e-30", "at most 18 decimal places"),
        ("1e999999999", "below 10^20"),
    ],
)
def test_numbers_are_bounded_to_numeric_38_18(value: str, fragment: str) -> None:
    for key in ("qty", "price", "notional", "take_profit", "stop_loss"):
        assert fragment in str(_problems(_body(**{key: value})))


def test_numbers_at_the_bounds_of_numeric_38_18_are_kept_exactly() -> None:
    signal, _ = parse_message(
        _body(qty="99999999999999999999.999999999999999999", price="0.000000000000000001")
    )
    assert signal.qty == Decimal("99999999999999999999.999999999999999999")
    assert signal.price == Decimal("0.000000000000000001")
    assert parse_message(_body(qty="1.50000000000000000000000"))[0].qty == Decimal("1.5")


@pytest.mark.parametrize("created_at", ["1" * 40, "1e999999999", "9" * 70, -5, 10**20])
def test_created_at_out_of_range_is_invalid_not_a_crash(created_at: object) -> None:
    assert "created_at:" in str(_problems(_body(created_at=created_at)))


def test_created_at_can_be_required() -> None:
    required = SignalLimits(require_created_at=True)
    error = _problems(_body(), required)
    assert "created_at: required (OM_REQUIRE_CREATED_AT is set)" in str(error)
    assert error.storable and error.signal_id == "b1"
    assert parse_message(_body(created_at=1764064800000), required)[0].created_at is not None


# -- timing: one computation, one check ---------------------------------------------------------

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
AGE = timedelta(seconds=60)
SKEW = timedelta(seconds=5)


def _timing(born: datetime) -> str | None:
    rejection = timing_rejection(born, NOW, max_age=AGE, clock_skew=SKEW)
    return None if rejection is None else rejection.code


def test_created_at_ahead_by_more_than_the_skew_is_from_the_future() -> None:
    assert _timing(NOW + timedelta(hours=1)) == "SIGNAL_FROM_FUTURE"
    assert _timing(datetime(2999, 1, 1, tzinfo=UTC)) == "SIGNAL_FROM_FUTURE"
    assert _timing(NOW + timedelta(seconds=6)) == "SIGNAL_FROM_FUTURE"
    assert _timing(NOW + timedelta(seconds=4)) is None
    assert _timing(NOW - timedelta(seconds=59)) is None
    assert _timing(NOW - timedelta(seconds=61)) == "SIGNAL_STALE"


def test_without_created_at_age_counts_from_the_amqp_timestamp_else_first_receipt() -> None:
    received = NOW - timedelta(seconds=1)
    sent = NOW - timedelta(minutes=10)
    created = NOW - timedelta(seconds=2)
    assert signal_born(created, sent_at=sent, received_at=received) == created
    assert signal_born(None, sent_at=sent, received_at=received) == sent
    assert signal_born(None, sent_at=None, received_at=received) == received
    # A producer clock ahead of ours cannot make a signal younger than its receipt.
    ahead = NOW + timedelta(hours=1)
    assert signal_born(None, sent_at=ahead, received_at=received) == received


_any_text = st.text(st.characters(exclude_categories=()), max_size=6)
_hostile_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_any_text, inner, max_size=3),
    max_leaves=40,
)


@given(
    metadata=_hostile_json,
    signal_id=_any_text,
    symbol=st.sampled_from(["BTCUSDT", "btcusdt", "BTCUſDT", "BTCUSDT\n", "ＢＴＣ"]) | _any_text,
)
def test_whatever_is_accepted_the_database_can_store_and_serve(
    metadata: object, signal_id: str, symbol: str
) -> None:
    body = json.dumps({"signal_id": signal_id, "symbol": symbol, "side": "buy", "m": metadata})
    try:
        signal, payload = parse_message(body.encode())
    except InvalidSignal as error:
        if error.signal_id is not None:
            assert "\x00" not in error.signal_id and len(error.signal_id) <= MAX_ID_LENGTH
            error.signal_id.encode("utf-8")
        return
    stored = json.dumps(json_safe(payload), ensure_ascii=False)
    stored.encode("utf-8")  # no lone surrogate anywhere
    assert "\\u0000" not in stored and "\x00" not in stored
    assert signal.symbol.isascii() and signal.symbol.isalnum() and signal.symbol.isupper()
    assert 1 <= len(signal.signal_id) <= MAX_ID_LENGTH


@pytest.mark.parametrize(
    "fields", [{"order_type": "MAR\u212aET"}, {"side": "ſell"}, {"category": "lınear"}]
)
def test_enumerations_do_not_fold_non_ascii_letters(fields: dict[str, object]) -> None:
    # "\u212a" (Kelvin sign) lower-cases to an ASCII "k".
    assert "\u212a".lower() == "k"
    with pytest.raises(InvalidSignal):
        parse_message(_body(**fields))
