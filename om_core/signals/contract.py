"""Parse and validate a trading signal (JSON, UTF-8) into :class:`om_plugins.Signal`.

Numbers may arrive as JSON numbers or strings; both become ``Decimal`` without passing
through float. Unknown top-level fields are kept in ``metadata`` under ``"extra"``.
See ``docs/signals.md`` for the contract.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from om_plugins.types import Category, OrderType, Side, Signal, TimeInForce

__all__ = ["InvalidSignal", "decode_json", "parse_signal", "read_signal_id"]

_E = TypeVar("_E", Side, Category, OrderType)
_SYMBOL = re.compile(r"^[A-Z0-9]{2,32}$")
_KNOWN = {
    "signal_id",
    "symbol",
    "side",
    "category",
    "strength",
    "order_type",
    "price",
    "qty",
    "notional",
    "reduce_only",
    "time_in_force",
    "take_profit",
    "stop_loss",
    "strategy_id",
    "model_version",
    "created_at",
    "metadata",
}
_TIF = {t.value.lower(): t for t in TimeInForce} | {"post_only": TimeInForce.POST_ONLY}


class InvalidSignal(ValueError):
    """The message can never become a valid signal. ``problems`` lists every field at fault."""

    def __init__(self, problems: list[str], signal_id: str | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.signal_id = signal_id


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def decode_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, floats as Decimal, no NaN/Infinity."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSignal([f"body is not UTF-8: {exc.reason} at byte {exc.start}"]) from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise InvalidSignal([f"body is not valid JSON: {exc}"]) from None
    except RecursionError:
        raise InvalidSignal(["body is not valid JSON: nested too deeply"]) from None


def read_signal_id(data: Any) -> str | None:
    """The signal id if one can be read at all (to record a dead-lettered signal)."""
    if isinstance(data, Mapping):
        value = data.get("signal_id")
        if isinstance(value, str) and 1 <= len(value) <= 128:
            return value
    return None


def parse_signal(body: bytes | Mapping[str, Any]) -> Signal:
    """Raise :class:`InvalidSignal` listing every problem, or return the signal."""
    data = decode_json(body) if isinstance(body, bytes | bytearray) else body
    if not isinstance(data, Mapping):
        raise InvalidSignal([f"signal must be a JSON object, got {type(data).__name__}"])
    problems: list[str] = []
    signal_id = read_signal_id(data)
    raw_id = data.get("signal_id")
    if signal_id is None:
        problems.append(
            "signal_id: required string of 1-128 characters"
            + ("" if raw_id is None else f" (got {_show(raw_id)})")
        )

    symbol = data.get("symbol")
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol.upper()):
        problems.append(f"symbol: required, like BTCUSDT (got {_show(symbol)})")
    side = _enum(data, "side", Side, problems, required=True)
    category = _enum(data, "category", Category, problems) or Category.LINEAR
    order_type = _enum(data, "order_type", OrderType, problems)

    strength = _decimal(data, "strength", problems)
    if strength is not None and not (0 <= strength <= 1):
        problems.append(f"strength: must be between 0 and 1 (got {strength})")
    price = _positive(data, "price", problems)
    qty = _positive(data, "qty", problems)
    notional = _positive(data, "notional", problems)
    take_profit = _positive(data, "take_profit", problems)
    stop_loss = _positive(data, "stop_loss", problems)

    reduce_only = data.get("reduce_only", False)
    if not isinstance(reduce_only, bool):
        problems.append(f"reduce_only: must be true or false (got {_show(reduce_only)})")

    tif: TimeInForce | None = None
    raw_tif = data.get("time_in_force")
    if raw_tif is not None:
        tif = _TIF.get(str(raw_tif).lower()) if isinstance(raw_tif, str) else None
        if tif is None:
            problems.append(f"time_in_force: one of GTC, IOC, FOK, PostOnly (got {_show(raw_tif)})")

    strategy_id = _optional_str(data, "strategy_id", problems)
    model_version = _optional_str(data, "model_version", problems)
    created_at = _timestamp(data.get("created_at"), problems)

    metadata = data.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        problems.append(f"metadata: must be an object (got {_show(metadata)})")
        metadata = {}
    extra = {k: v for k, v in data.items() if k not in _KNOWN}
    if extra:
        metadata = {**metadata, "extra": extra}

    if problems:
        raise InvalidSignal(problems, signal_id)
    assert signal_id is not None and isinstance(symbol, str) and side is not None
    return Signal(
        signal_id=signal_id,
        symbol=symbol.upper(),
        side=side,
        category=category,
        strength=strength if strength is not None else Decimal(1),
        order_type=order_type,
        price=price,
        qty=qty,
        notional=notional,
        reduce_only=bool(reduce_only),
        time_in_force=tif,
        take_profit=take_profit,
        stop_loss=stop_loss,
        strategy_id=strategy_id,
        model_version=model_version,
        created_at=created_at,
        metadata=dict(metadata),
    )


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _enum(
    data: Mapping[str, Any],
    key: str,
    enum: type[_E],
    problems: list[str],
    *,
    required: bool = False,
) -> _E | None:
    value = data.get(key)
    if value is None:
        if required:
            problems.append(f"{key}: required, one of {', '.join(e.value for e in enum)}")
        return None
    if isinstance(value, str):
        try:
            return enum(value.lower())
        except ValueError:
            pass
    problems.append(f"{key}: one of {', '.join(e.value for e in enum)} (got {_show(value)})")
    return None


def _decimal(data: Mapping[str, Any], key: str, problems: list[str]) -> Decimal | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        problems.append(f"{key}: must be a number or a numeric string (got {_show(value)})")
        return None
    try:
        result = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        problems.append(f"{key}: not a number (got {_show(value)})")
        return None
    if not result.is_finite():
        problems.append(f"{key}: must be finite (got {_show(value)})")
        return None
    return result


def _positive(data: Mapping[str, Any], key: str, problems: list[str]) -> Decimal | None:
    value = _decimal(data, key, problems)
    if value is not None and value <= 0:
        problems.append(f"{key}: must be greater than 0 (got {value})")
        return None
    return value


def _optional_str(data: Mapping[str, Any], key: str, problems: list[str]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 128:
        problems.append(f"{key}: must be a string of at most 128 characters")
        return None
    return value


def _timestamp(value: Any, problems: list[str]) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int | Decimal) or (isinstance(value, str) and value.isdigit()):
            return datetime.fromtimestamp(int(Decimal(value)) / 1000, tz=UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                raise ValueError
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        pass
    problems.append(
        f"created_at: ISO 8601 with a timezone, or epoch milliseconds (got {_show(value)})"
    )
    return None
