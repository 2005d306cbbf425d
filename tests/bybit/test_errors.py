"""retCodes and pybit's exceptions → the typed outcomes the engine acts on.

The exceptions are pybit's and requests' own classes, built as pybit builds them."""

from __future__ import annotations

import pytest
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from om_plugins import (
    DuplicateClientOrderId,
    ExchangeAuthError,
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    OutcomeUnknown,
    ReasonCode,
)
from plugins_builtin.bybit.codes import RET_CODES, reason_for_ret_code
from plugins_builtin.bybit.errors import Operation, classify

CREATE, CHANGE, READ = Operation.CREATE, Operation.CHANGE, Operation.READ


def bybit(code: int, message: str = "msg", headers: dict[str, str] | None = None) -> Exception:
    return InvalidRequestError(
        request="POST /v5/order/create: {}",
        message=message,
        status_code=code,
        time="12:00:00",
        resp_headers=headers or {},
    )


def http(status: int, headers: dict[str, str] | None = None) -> Exception:
    return FailedRequestError(
        request="POST /v5/order/create: {}",
        message="HTTP status code is not 200.",
        status_code=status,
        time="12:00:00",
        resp_headers=headers if headers is not None else {"Content-Type": "text/html"},
    )


def outcome(exc: BaseException, operation: Operation = CREATE) -> ExchangeError:
    return classify(exc, operation, what="create x", secrets=("the-api-key",))


R = ReasonCode


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        (110072, DuplicateClientOrderId, R.DUPLICATE_ORDER),
        (170141, DuplicateClientOrderId, R.DUPLICATE_ORDER),
        (12141, DuplicateClientOrderId, R.DUPLICATE_ORDER),
        (110007, ExchangeRejected, R.INSUFFICIENT_BALANCE),
        (110004, ExchangeRejected, R.INSUFFICIENT_BALANCE),
        (110006, ExchangeRejected, R.INSUFFICIENT_BALANCE),
        (110012, ExchangeRejected, R.INSUFFICIENT_BALANCE),
        (110044, ExchangeRejected, R.INSUFFICIENT_BALANCE),
        (110045, ExchangeRejected, R.INSUFFICIENT_BALANCE),
        (170131, ExchangeRejected, R.INSUFFICIENT_BALANCE),
        (10001, ExchangeRejected, R.EXCHANGE_REJECTED),
        (110094, ExchangeRejected, R.MIN_NOTIONAL),
        (170140, ExchangeRejected, R.MIN_NOTIONAL),
        (110003, ExchangeRejected, R.PRICE_OUT_OF_RANGE),
        (110017, ExchangeRejected, R.REDUCE_ONLY_REJECTED),
        (170136, ExchangeRejected, R.INVALID_QTY),
        (170134, ExchangeRejected, R.INVALID_PRICE),
        (110020, ExchangeRejected, R.TOO_MANY_ORDERS),
        (110025, ExchangeRejected, R.POSITION_MODE),
        (110001, ExchangeRejected, R.ORDER_NOT_FOUND),
        (170213, ExchangeRejected, R.ORDER_NOT_FOUND),
        (999999, ExchangeRejected, R.EXCHANGE_REJECTED),
        (10002, ExchangeAuthError, R.AUTH),
        (10003, ExchangeAuthError, R.AUTH),
        (10004, ExchangeAuthError, R.AUTH),
        (10005, ExchangeAuthError, R.AUTH),
        (10010, ExchangeAuthError, R.AUTH),
        (10006, ExchangeUnavailable, R.RATE_LIMITED),
        (10016, OutcomeUnknown, None),
        (10000, OutcomeUnknown, None),
        (170146, OutcomeUnknown, None),
    ],
)
def test_create_ret_codes(code: int, kind: type[ExchangeError], reason: ReasonCode | None) -> None:
    result = outcome(bybit(code, "some text"))
    assert type(result) is kind
    assert result.code == str(code)
    # Failures that may have executed have no reason: nothing was refused.
    assert result.reason_code == (reason.value if reason is not None else "")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("position idx not match position mode", R.POSITION_MODE),
        ("Qty invalid", R.INVALID_QTY),
        ("The number of contracts exceeds minimum limit allowed", R.INVALID_QTY),
        ("Price invalid", R.INVALID_PRICE),
        ("params error: symbol invalid", R.SYMBOL_NOT_TRADING),
        ("Request parameter error.", R.EXCHANGE_REJECTED),
    ],
)
def test_bybits_generic_parameter_error_is_read_from_its_text(
    message: str, reason: ReasonCode
) -> None:
    assert outcome(bybit(10001, message)).reason_code == reason.value


def test_the_four_insufficient_funds_codes_of_the_issue_are_one_reason() -> None:
    reasons = {reason_for_ret_code(code) for code in (110007, 110004, 110012, 170131)}
    assert reasons == {R.INSUFFICIENT_BALANCE}
    assert all(isinstance(reason, ReasonCode) for reason in RET_CODES.values())


def test_rejection_keeps_bybit_message() -> None:
    result = outcome(bybit(110007, "ab not enough for new order"))
    assert result.message == "ab not enough for new order"


def test_rate_limit_retry_after_comes_from_the_reset_header() -> None:
    import time

    reset = int((time.time() + 0.8) * 1000)
    result = outcome(bybit(10006, headers={"X-Bapi-Limit-Reset-Timestamp": str(reset)}))
    assert isinstance(result, ExchangeUnavailable)
    assert result.retry_after is not None and 0.5 < result.retry_after <= 0.8
    assert outcome(bybit(10006)).retry_after == 1.0  # no header: one window


def test_duplicate_outside_create_is_a_rejection() -> None:
    assert type(outcome(bybit(110072), CHANGE)) is ExchangeRejected


@pytest.mark.parametrize("status", [500, 502, 503, 504, 404, 400])
def test_http_errors_after_sending_are_unknown_for_changes(status: int) -> None:
    assert type(outcome(http(status))) is OutcomeUnknown
    assert type(outcome(http(status), CHANGE)) is OutcomeUnknown
    assert type(outcome(http(status), READ)) is ExchangeUnavailable


def test_http_refusals() -> None:
    assert type(outcome(http(401))) is ExchangeAuthError
    assert outcome(http(401)).reason_code == "AUTH"
    assert type(outcome(http(403))) is ExchangeUnavailable
    assert outcome(http(403)).reason_code == "IP_BANNED"
    assert type(outcome(http(429))) is ExchangeUnavailable
    assert outcome(http(429)).reason_code == "RATE_LIMITED"


def test_unreadable_json_is_unknown() -> None:
    # pybit's own error for a 200 whose body is not JSON: it has no response headers.
    failed = FailedRequestError(
        request="JSON decoding",
        message="Conflict. Could not decode JSON.",
        status_code=409,
        time="12:00:00",
        resp_headers=None,
    )
    assert type(outcome(failed)) is OutcomeUnknown
    assert type(outcome(ValueError("Expecting value: line 1"))) is OutcomeUnknown


def test_connection_refused_is_unavailable_but_a_reset_is_unknown() -> None:
    refused = requests.exceptions.ConnectionError(
        MaxRetryError(None, "/", NewConnectionError(None, "refused"))  # type: ignore[arg-type]
    )
    assert type(outcome(refused)) is ExchangeUnavailable
    assert type(outcome(requests.exceptions.ConnectTimeout("connect timeout"))) is (
        ExchangeUnavailable
    )
    aborted = requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    )
    assert type(outcome(aborted)) is OutcomeUnknown
    assert type(outcome(requests.exceptions.ReadTimeout("read timeout"))) is OutcomeUnknown
    assert type(outcome(requests.exceptions.ChunkedEncodingError("broken"))) is OutcomeUnknown
    assert type(outcome(RuntimeError("anything else"))) is OutcomeUnknown


def test_secrets_are_scrubbed_from_messages() -> None:
    echoed = "error sign! origin_string[1658384314791the-api-key5000{}]"
    result = outcome(bybit(10004, echoed))
    assert "the-api-key" not in result.message and "***" in result.message
