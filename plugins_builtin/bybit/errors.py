"""What a failed Bybit request means for the engine: Bybit's ``retCode`` and pybit's
exceptions mapped to the typed outcomes of :mod:`om_plugins.errors`.

The rule that matters is the one for requests that change something (create, cancel):
only a failure that *certainly* happened before Bybit executed anything may be reported as
:class:`ExchangeUnavailable` (the engine retries it) or :class:`ExchangeRejected`; anything
that may have happened after the request reached Bybit is :class:`OutcomeUnknown`, and the
engine looks the order up before it sends anything again. A read that fails transiently is
:class:`ExchangeUnavailable`: nothing changed, asking again is safe.

Every error carries Bybit's code (``retCode``, or the HTTP status) as ``code`` and its
neutral meaning from :mod:`plugins_builtin.bybit.codes` as ``reason_code``; failures that
are not Bybit's answer (timeouts, broken connections) have no reason code. Sources for the
codes: Bybit's ``docs/v5/error.mdx``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from om_plugins import (
    DuplicateClientOrderId,
    ExchangeAuthError,
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    OutcomeUnknown,
    ReasonCode,
)
from plugins_builtin.bybit.codes import HTTP_CODES, RET_CODES, reason_for_ret_code
from plugins_builtin.bybit.ratelimit import parse_limit_headers

__all__ = [
    "AUTH_CODES",
    "DUPLICATE_CODES",
    "ORDER_NOT_FOUND_CODES",
    "PRECISION_CODES",
    "RATE_LIMIT_CODES",
    "UNKNOWN_OUTCOME_CODES",
    "Operation",
    "ResponseError",
    "classify",
    "never_sent",
]

#: The order link id is taken: an earlier attempt placed the order (derivatives; spot).
DUPLICATE_CODES = frozenset({110072, 170141, 12141})
#: Credentials wrong, expired, lacking permission, bound to another IP, or a clock so far off
#: that every request is outside the receive window: trading cannot go on.
AUTH_CODES = frozenset(c for c, r in RET_CODES.items() if r is ReasonCode.AUTH)
#: Too many requests; the request was refused before it was executed.
RATE_LIMIT_CODES = frozenset(c for c, r in RET_CODES.items() if r is ReasonCode.RATE_LIMITED)
#: Bybit's own timeouts and restarts: the request may have been executed.
UNKNOWN_OUTCOME_CODES = frozenset({10000, 10016, 10019, 170007, 170146})
#: Rejections caused by the instrument's rules (quantity or price grid, minimums): the
#: cached rules may be stale.
PRECISION_CODES = frozenset(
    {10001, 110017, 110094, 12137, 170132, 170133, 170134, 170135, 170136, 170137, 170140}
)
#: Cancel or amend of an order that is not open (never existed, filled, cancelled).
ORDER_NOT_FOUND_CODES = frozenset(
    c for c, r in RET_CODES.items() if r is ReasonCode.ORDER_NOT_FOUND
)

#: A 10006 without a reset header: Bybit's window is one second.
DEFAULT_RETRY_AFTER = 1.0


class Operation(enum.Enum):
    """What kind of request failed; decides how an ambiguous failure is reported."""

    #: Places an order: a duplicate link id means "already placed".
    CREATE = "create"
    #: Changes something that is not an order placement (cancel).
    CHANGE = "change"
    #: Changes nothing.
    READ = "read"


class ResponseError(Exception):
    """A response arrived but could not be understood (not JSON, missing fields)."""


def never_sent(exc: BaseException) -> bool:
    """True when ``exc`` proves the request never left this machine: the TCP connection
    could not be established (refused, unresolvable host, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        inner = exc.args[0] if exc.args else None
        reason = getattr(inner, "reason", inner)
        # urllib3 2 makes NewConnectionError a ConnectTimeoutError; both fail before sending.
        return isinstance(reason, NewConnectionError | ConnectTimeoutError)
    return False


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _retry_after(headers: Mapping[str, str] | None) -> float:
    after = parse_limit_headers(headers).retry_after()
    return DEFAULT_RETRY_AFTER if after is None else after


def classify(
    exc: BaseException,
    operation: Operation,
    *,
    what: str,
    secrets: Iterable[str] = (),
) -> ExchangeError:
    """The typed outcome of a request that raised ``exc``.

    ``what`` names the request in messages (``"POST /v5/order/create"``); ``secrets`` are
    removed from every message (Bybit echoes the signed string, API key included, in 10004).
    """
    secrets = tuple(secrets)
    changes = operation is not Operation.READ

    def unknown(message: str, code: str = "") -> ExchangeError:
        text = _scrub(f"{what}: {message}", secrets)
        if changes:
            return OutcomeUnknown(text, code=code)
        return ExchangeUnavailable(text, code=code)

    if isinstance(exc, ExchangeError):
        return exc
    if isinstance(exc, InvalidRequestError):
        try:
            code = int(exc.status_code)
        except (TypeError, ValueError):
            return unknown(f"unreadable error code {exc.status_code!r}")
        message = _scrub(str(exc.message), secrets)
        text = f"{what}: {message} (retCode {code})"
        reason = reason_for_ret_code(code, message).value
        if code in DUPLICATE_CODES and operation is Operation.CREATE:
            return DuplicateClientOrderId(message, code=str(code), reason_code=reason)
        if code in AUTH_CODES:
            return ExchangeAuthError(text, code=str(code), reason_code=reason)
        if code in RATE_LIMIT_CODES:
            return ExchangeUnavailable(
                text,
                code=str(code),
                reason_code=reason,
                retry_after=_retry_after(exc.resp_headers),
            )
        if code in UNKNOWN_OUTCOME_CODES:
            return unknown(f"{message} (retCode {code})", str(code))
        return ExchangeRejected(message, code=str(code), reason_code=reason)
    if isinstance(exc, FailedRequestError):
        status = exc.status_code
        if exc.resp_headers is None:
            # Raised by pybit itself: 409 "could not decode JSON" (a response came back
            # but is unreadable) or retries exhausted.
            return unknown(str(exc.message))
        if status == 401:
            return ExchangeAuthError(
                f"{what}: HTTP 401 (invalid key or auth headers)",
                code="401",
                reason_code=ReasonCode.AUTH.value,
            )
        if status in (403, 429):
            # Bybit's gateway refuses before processing: IP rate limit, region, or
            # system-level frequency protection. The client turns it into a ban.
            return ExchangeUnavailable(
                f"{what}: HTTP {status} ({exc.message})",
                code=str(status),
                reason_code=HTTP_CODES[status].value,
                retry_after=_retry_after(exc.resp_headers),
            )
        return unknown(f"HTTP {status}", str(status))
    if isinstance(exc, PermissionError):
        return ExchangeAuthError(
            f"{what}: {exc}", code="NO_KEYS", reason_code=ReasonCode.AUTH.value
        )
    if never_sent(exc):
        return ExchangeUnavailable(_scrub(f"{what}: cannot connect ({exc})", secrets))
    if isinstance(exc, requests.exceptions.Timeout):
        return unknown("no response in time")
    if isinstance(exc, requests.exceptions.RequestException):
        return unknown(f"connection failed after sending ({type(exc).__name__}: {exc})")
    if isinstance(exc, ResponseError | ValueError):
        return unknown(f"unreadable response ({exc})")
    return unknown(f"{type(exc).__name__}: {exc}")
