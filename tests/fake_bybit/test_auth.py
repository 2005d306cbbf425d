"""Request authentication, rate-limit headers and routing, checked with hand-built requests."""

from __future__ import annotations

import json
import time

import pytest
from pybit.exceptions import InvalidRequestError

from tests.fake_bybit import FakeBybit
from tests.fake_bybit.conftest import (
    API_KEY,
    API_SECRET,
    call,
    pybit_session,
    raw_request,
    signed_request,
)
from tests.fake_bybit.signing import (
    check_request,
    rest_signature,
    signed_headers,
    ws_auth_signature,
)

ORDER = b'{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"0.01"}'


def test_signatures_match_the_vectors_computed_with_pybit() -> None:
    # Computed with pybit's own generate_signature on these inputs.
    assert (
        rest_signature(
            "testsecret",
            "1658384314791",
            "testkey",
            "5000",
            b"category=option&symbol=BTC-29JUL22-25000-C",
        )
        == "234e645dce3a16c7c538ec725b089f9959ddc0648c4a09e14ad706ea8b4baf48"
    )
    body = (
        b'{"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", '
        b'"qty": "0.001", "price": "60000", "orderLinkId": "abc-1"}'
    )
    assert (
        rest_signature("testsecret", "1658384314791", "testkey", "5000", body)
        == "92320a93378271207e02116ad41a8c4ad60c62dfaea0864253825b0cf2d128d8"
    )
    assert (
        ws_auth_signature("testsecret", 1662350400000)
        == "b38c4f23eca76c513b6542823c0882c502bdea24e31f6d6af028af804c5c850a"
    )


@pytest.mark.parametrize(
    ("offset_ms", "window", "code"),
    [
        (0, "5000", None),
        (-5000, "5000", None),
        (-5001, "5000", 10002),
        (999, "5000", None),
        (1000, "5000", 10002),
        (-7000, "7500", None),
        (-5001, "", 10002),
        ("abc", "5000", 10001),
        (0, "5s", 10001),
    ],
)
def test_timestamp_window_is_bybits_rule(
    offset_ms: int | str, window: str, code: int | None
) -> None:
    now = 1_700_000_000_000
    timestamp = str(now + offset_ms) if isinstance(offset_ms, int) else offset_ms
    headers = {
        "X-BAPI-API-KEY": "k",
        "X-BAPI-TIMESTAMP": timestamp,
        "X-BAPI-SIGN": rest_signature("s", timestamp, "k", window, b"a=1"),
    }
    if window:
        headers["X-BAPI-RECV-WINDOW"] = window

    error = check_request(headers, b"a=1", now_ms=now, keys={"k": "s"})

    assert (error.ret_code if error else None) == code
    if code == 10002:
        assert error is not None
        expected_window = window or "5000"
        assert error.ret_msg == (
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{timestamp}],server_timestamp[{now}],recv_window[{expected_window}]"
        )


async def test_get_is_verified_over_the_raw_query_string(fake: FakeBybit) -> None:
    # Sent byte for byte: a percent-encoded cursor and a raw comma list, as pybit sends them.
    query = "accountType=UNIFIED&coin=USDT,BTC&cursor=page_args%3Dab%26"

    response = await signed_request(fake, "GET", "/v5/account/wallet-balance", query=query)

    assert response.status == 200
    assert response.json()["retCode"] == 0


async def test_post_is_verified_over_the_raw_body_bytes(fake: FakeBybit) -> None:
    compact = await signed_request(fake, "POST", "/v5/order/create", body=ORDER)
    spaced = json.dumps(json.loads(ORDER)).encode()  # pybit's separators
    assert spaced != ORDER
    pybit_style = await signed_request(fake, "POST", "/v5/order/create", body=spaced)

    assert compact.json()["retCode"] == 0
    assert pybit_style.json()["retCode"] == 0
    assert len(fake.exchange.orders_by_id) == 2


async def test_bad_signature_is_10004_with_the_origin_string(fake: FakeBybit) -> None:
    timestamp = int(time.time() * 1000)
    headers = signed_headers(
        api_key=API_KEY, api_secret=API_SECRET, timestamp_ms=timestamp, payload=ORDER
    )
    # Signed over one serialisation, sent with another: Bybit never re-serialises.
    tampered = ORDER.replace(b'"qty":"0.01"', b'"qty": "0.01"')

    response = await raw_request(fake, "POST", "/v5/order/create", body=tampered, headers=headers)

    assert response.status == 200
    body = response.json()
    assert body["retCode"] == 10004
    origin = f"{timestamp}{API_KEY}5000{tampered.decode()}"
    assert body["retMsg"] == f"error sign! origin_string[{origin}]"
    assert body["result"] == {} and body["retExtInfo"] == {}
    assert fake.exchange.orders_by_id == {} and fake.create_calls == []


async def test_unknown_key_is_10003(fake: FakeBybit) -> None:
    response = await signed_request(
        fake, "GET", "/v5/position/list", query="category=linear&symbol=BTCUSDT", api_key="who"
    )

    assert response.status == 200
    assert (response.json()["retCode"], response.json()["retMsg"]) == (
        10003,
        "API key is invalid.",
    )


async def test_stale_timestamp_is_10002(fake: FakeBybit) -> None:
    stale = int(time.time() * 1000) - 6000

    response = await signed_request(
        fake, "POST", "/v5/order/create", body=ORDER, timestamp_ms=stale
    )

    body = response.json()
    assert body["retCode"] == 10002
    assert body["retMsg"].startswith(
        "invalid request, please check your server timestamp or recv_window param. "
        f"req_timestamp[{stale}],server_timestamp["
    )
    assert body["retMsg"].endswith(",recv_window[5000]")
    assert fake.exchange.orders_by_id == {}


async def test_missing_recv_window_header_signs_empty_and_defaults_to_5000(
    fake: FakeBybit,
) -> None:
    response = await signed_request(
        fake, "GET", "/v5/order/realtime", query="category=spot", recv_window=None
    )

    assert response.json()["retCode"] == 0


async def test_missing_auth_headers_is_10001(fake: FakeBybit) -> None:
    response = await raw_request(fake, "GET", "/v5/order/realtime", query="category=spot")

    assert response.json()["retCode"] == 10001
    assert response.json()["retMsg"] == "empty value: apiTimestamp[] apiKey[] apiSignature[]"


async def test_pybit_sees_10002_when_the_server_clock_runs_ahead(fake: FakeBybit) -> None:
    session = pybit_session(fake)
    session.retry_codes = set()  # pybit would otherwise widen recv_window and sleep 3 s
    fake.clock_skew_ms = 10_000

    with pytest.raises(InvalidRequestError) as stale:
        await call(session.get_positions, category="linear", symbol="BTCUSDT")

    assert stale.value.status_code == 10002


async def test_every_answer_has_rate_limit_headers_with_a_future_reset(fake: FakeBybit) -> None:
    before = int(time.time() * 1000)
    answers = [
        await signed_request(fake, "GET", "/v5/order/realtime", query="category=spot"),
        await raw_request(fake, "GET", "/v5/market/time"),
        await raw_request(fake, "GET", "/v5/nowhere"),
        await raw_request(fake, "GET", "/v5/order/realtime", query="category=spot"),
    ]

    for answer in answers:
        assert int(answer.headers["X-Bapi-Limit"]) > 0
        assert int(answer.headers["X-Bapi-Limit-Status"]) >= 0
        # A second after the request: pybit sleeps until it and crashes on a past one.
        assert int(answer.headers["X-Bapi-Limit-Reset-Timestamp"]) >= before + 1000


async def test_limit_status_counts_down_within_the_second(fake: FakeBybit) -> None:
    first = await signed_request(fake, "POST", "/v5/order/create", body=ORDER)
    second = await signed_request(fake, "POST", "/v5/order/create", body=ORDER)

    assert first.headers["X-Bapi-Limit"] == "10"
    assert int(second.headers["X-Bapi-Limit-Status"]) < int(first.headers["X-Bapi-Limit-Status"])


async def test_unknown_route_and_wrong_method_are_404(fake: FakeBybit) -> None:
    unknown = await raw_request(fake, "GET", "/v5/order/nothing")
    wrong_method = await signed_request(fake, "GET", "/v5/order/create", query="category=linear")

    for response in (unknown, wrong_method):
        assert response.status == 404
        assert response.json()["retCode"] == 10017


async def test_post_body_must_be_a_json_object(fake: FakeBybit) -> None:
    response = await signed_request(fake, "POST", "/v5/order/create", body=b"[1, 2]")

    assert response.json()["retCode"] == 10001


async def test_numbers_must_be_strings_like_bybit_expects(fake: FakeBybit) -> None:
    body = b'{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":0.01}'

    response = await signed_request(fake, "POST", "/v5/order/create", body=body)

    assert response.json()["retCode"] == 10001
    assert "qty" in response.json()["retMsg"]
    assert fake.exchange.orders_by_id == {}
    assert str(fake.create_calls[0]["qty"]) == "0.01"  # parsed as Decimal, never float
