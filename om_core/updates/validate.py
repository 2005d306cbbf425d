"""What the engine accepts from an exchange plugin's decoder: reports it can store.

A decoder is the plugin's code; the database's limits are the engine's. Anything a column
cannot hold (a string too long or holding NUL, a lone surrogate or control characters, a
number with more digits than ``NUMERIC(38, 18)``, a position index other than 0–2, a time no
exchange could mean: before 2000 or more than :data:`MAX_FUTURE` ahead of the engine's clock)
makes the message invalid here, with a reason, so it is dead-lettered at once instead of
failing on every delivery (``docs/events.md``, "The input: ``ws-gateway.order``").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from om_core.clock import utcnow
from om_core.db.types import SCALE, strip_zeros
from om_plugins.reports import (
    ExecutionReport,
    InvalidReport,
    OrderReport,
    PositionReport,
    Report,
    StreamGap,
)

__all__ = ["MAX_FUTURE", "check_reports"]

#: ``NUMERIC(38, 18)`` holds 20 digits before the point.
_LIMIT = Decimal(10) ** 20
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)
#: How far ahead of the engine's clock an exchange's timestamp may be (clock skew, generous).
MAX_FUTURE = timedelta(days=1)
#: Column lengths (see om_core/db/models.py).
_LENGTHS = {
    "exchange_order_id": 64,
    "client_order_id": 36,
    "symbol": 64,
    "exec_id": 96,
    "currency": 16,
}


def check_reports(reports: Iterable[Report | PositionReport]) -> None:
    """Raise :class:`InvalidReport` for the first report the engine could not store."""
    for index, report in enumerate(reports):
        try:
            _check(report)
        except InvalidReport as exc:
            raise InvalidReport(f"report {index}: {exc}") from None


def _check(report: Report | PositionReport) -> None:
    if isinstance(report, StreamGap):
        return
    _text("symbol", report.symbol, required=True)
    if isinstance(report, PositionReport):
        _number("size", report.size, signed=True)
        return
    _text("exchange_order_id", report.exchange_order_id)
    _text("client_order_id", report.client_order_id)
    if not report.exchange_order_id and not report.client_order_id:
        raise InvalidReport("neither an exchange order id nor a client order id")
    if isinstance(report, ExecutionReport):
        _text("exec_id", report.exec_id, required=True)
        _number("qty", report.qty, positive=True)
        _number("price", report.price, positive=True)
        _number("value", report.value)
        _number("order_qty", report.order_qty)
        _number("leaves_qty", report.leaves_qty)
        if report.fee is not None:
            _number("fee", report.fee.amount, signed=True)
            _text("currency", report.fee.currency)
        _time("executed_at", report.executed_at)
        return
    assert isinstance(report, OrderReport)
    _number("qty", report.qty)
    _number("price", report.price)
    _number("filled_qty", report.filled_qty)
    _number("leaves_qty", report.leaves_qty)
    _number("take_profit", report.take_profit)
    _number("stop_loss", report.stop_loss)
    _number("filled_value", report.filled_value, exact=False)
    _number("avg_price", report.avg_price, exact=False)
    for fee in report.fees:
        _number("fee", fee.amount, signed=True, exact=False)
        _text("currency", fee.currency)
    if (
        not isinstance(report.position_idx, int)
        or isinstance(report.position_idx, bool)
        or report.position_idx not in (0, 1, 2)
    ):
        raise InvalidReport(f"position_idx must be 0, 1 or 2 (got {report.position_idx})")
    _time("created_at", report.created_at)
    _time("updated_at", report.updated_at)


def _text(name: str, value: object, *, required: bool = False) -> None:
    if not isinstance(value, str):
        raise InvalidReport(f"{name} must be text, got {type(value).__name__}")
    if required and not value:
        raise InvalidReport(f"{name} is empty")
    if len(value) > _LENGTHS[name]:
        raise InvalidReport(f"{name} is longer than {_LENGTHS[name]} characters")
    if "\x00" in value or not value.isprintable():
        raise InvalidReport(f"{name} holds control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidReport(f"{name} is not valid text") from None


def _number(
    name: str,
    value: Decimal | None,
    *,
    positive: bool = False,
    signed: bool = False,
    exact: bool = True,
) -> None:
    if value is None:
        return
    if not isinstance(value, Decimal) or isinstance(value, bool):
        raise InvalidReport(f"{name} must be a decimal number, got {type(value).__name__}")
    if not value.is_finite():
        raise InvalidReport(f"{name} is not a finite number")
    if positive and value <= 0:
        raise InvalidReport(f"{name} must be positive (got {value})")
    if not signed and not positive and value < 0:
        raise InvalidReport(f"{name} must not be negative (got {value})")
    if abs(value) >= _LIMIT:
        raise InvalidReport(f"{name} is too large (got {value})")
    exponent = strip_zeros(value).as_tuple().exponent
    if exact and isinstance(exponent, int) and exponent < -SCALE:
        raise InvalidReport(f"{name} has more than {SCALE} decimal places (got {value})")


def _time(name: str, value: datetime | None) -> None:
    if value is None:
        return
    if not isinstance(value, datetime):
        raise InvalidReport(f"{name} must be a time, got {type(value).__name__}")
    if value.tzinfo is None:
        raise InvalidReport(f"{name} has no timezone")
    if not _EARLIEST <= value < _LATEST:
        raise InvalidReport(f"{name} is out of range ({value.isoformat()})")
    latest = utcnow() + MAX_FUTURE
    if value > latest:
        raise InvalidReport(
            f"{name} is more than {MAX_FUTURE.days} day ahead of now ({value.isoformat()})"
        )
