"""Parse and validate a trading signal (JSON, UTF-8) into :class:`om_plugins.Signal`.

Numbers may arrive as JSON numbers or strings; both become ``Decimal`` without passing
through float. Unknown top-level fields are kept in ``metadata`` under ``"extra"``.
See ``docs/signals.md`` for the contract.

One entry for a signal as it arrives, on the bus and over the API alike:
:func:`parse_message` (size, JSON, structure, fields). Its bounds keep out what the database
cannot store or a reader cannot serve back: a message larger than
:attr:`SignalLimits.max_bytes`, JSON nested deeper than :data:`MAX_DEPTH`, NUL or lone
surrogates in any string (keys included), strings longer than their column, symbols other
than ASCII ``[A-Z0-9]``, numbers that ``NUMERIC(38,18)`` cannot hold.

When a signal was born, and whether it is too old or from the future, is decided by
:func:`signal_born` and :func:`timing_rejection`, the engine's one timing check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar

from om_plugins.types import Category, OrderType, Rejection, Side, Signal, TimeInForce

if TYPE_CHECKING:
    from om_core.config import Settings

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "InvalidSignal",
    "MessageTooLarge",
    "SignalLimits",
    "decode_json",
    "parse_message",
    "parse_signal",
    "read_signal_id",
    "signal_born",
    "stale_rejection",
    "timing_rejection",
]

_E = TypeVar("_E", Side, Category, OrderType)
#: Matched whole (``fullmatch``: no trailing newline) against ASCII only, after upper-casing
#: ASCII letters; a non-ASCII letter is never folded into one (``ſ`` is not ``S``).
_SYMBOL = re.compile(r"[A-Z0-9]{2,32}")
#: ``signals.signal_id`` is VARCHAR(128); ``strategy_id``/``model_version`` have the same bound.
MAX_ID_LENGTH = 128
#: JSON nesting, the signal object itself being level 1.
MAX_DEPTH = 32
#: ``NUMERIC(38,18)``: 20 digits before the point, 18 after.
_MAX_NUMBER = Decimal(10) ** 20
_MAX_PLACES = 18
#: ``created_at`` as epoch milliseconds: before year 10000.
_MAX_EPOCH_MS = 253_402_300_800_000
_MAX_TIMESTAMP_TEXT = 64


@dataclass(frozen=True, slots=True)
class SignalLimits:
    """The deployment's bounds (``OM_MAX_MESSAGE_BYTES``, ``OM_CLOCK_SKEW_SECONDS``,
    ``OM_REQUIRE_CREATED_AT``)."""

    max_bytes: int = 64 * 1024
    clock_skew: timedelta = timedelta(seconds=5)
    require_created_at: bool = False

    @classmethod
    def of(cls, settings: Settings) -> SignalLimits:
        return cls(
            max_bytes=settings.max_message_bytes,
            clock_skew=timedelta(seconds=settings.clock_skew_seconds),
            require_created_at=settings.require_created_at,
        )


DEFAULT_LIMITS = SignalLimits()
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
    """The message can never become a valid signal. ``problems`` lists every field at fault.

    ``storable`` is False when the decoded message must not be stored (it breaks a bound the
    database or a reader relies on); ``signal_id`` is then only set when the id itself is safe.
    """

    code = "INVALID_SIGNAL"

    def __init__(
        self, problems: list[str], signal_id: str | None = None, *, storable: bool = True
    ) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.signal_id = signal_id
        self.storable = storable
        #: The decoded message, when it was (set by :func:`parse_message`).
        self.payload: Any = None


class MessageTooLarge(InvalidSignal):
    """The message is larger than :attr:`SignalLimits.max_bytes`; it was not decoded."""

    code = "MESSAGE_TOO_LARGE"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            [f"message is {size} bytes, more than the maximum of {limit} (OM_MAX_MESSAGE_BYTES)"],
            storable=False,
        )
        self.size = size
        self.limit = limit


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
    """The signal id if one can be read at all (to record a dead-lettered signal): a string
    the ``signal_id`` column can hold (1-128 characters, no NUL, no lone surrogate)."""
    if isinstance(data, Mapping):
        value = data.get("signal_id")
        if isinstance(value, str) and 1 <= len(value) <= MAX_ID_LENGTH and _clean(value):
            return value
    return None


def parse_message(
    body: bytes, limits: SignalLimits = DEFAULT_LIMITS
) -> tuple[Signal, dict[str, Any]]:
    """The signal in a message as it arrived (from the bus or the API), and its decoded
    payload; raises :class:`InvalidSignal` (:class:`MessageTooLarge` before decoding)."""
    if len(body) > limits.max_bytes:
        raise MessageTooLarge(len(body), limits.max_bytes)
    data = decode_json(body)
    try:
        signal = parse_signal(data, limits)
    except InvalidSignal as exc:
        exc.signal_id = exc.signal_id or read_signal_id(data)
        exc.payload = data
        raise
    assert isinstance(data, dict)
    return signal, data


def parse_signal(body: bytes | Mapping[str, Any], limits: SignalLimits = DEFAULT_LIMITS) -> Signal:
    """Raise :class:`InvalidSignal` listing every problem, or return the signal."""
    data = decode_json(body) if isinstance(body, bytes | bytearray) else body
    if not isinstance(data, Mapping):
        raise InvalidSignal([f"signal must be a JSON object, got {type(data).__name__}"])
    signal_id = read_signal_id(data)
    raw_id = data.get("signal_id")
    structure = _structure_problems(data)
    if structure:
        raise InvalidSignal(structure, signal_id, storable=False)
    problems: list[str] = []
    if signal_id is None:
        problems.append(
            f"signal_id: required string of 1-{MAX_ID_LENGTH} characters"
            + ("" if raw_id is None else f" (got {_show(raw_id)})")
        )

    symbol = data.get("symbol")
    if not isinstance(symbol, str) or not symbol.isascii() or not _SYMBOL.fullmatch(symbol.upper()):
        problems.append(
            f"symbol: required, 2-32 ASCII letters and digits like BTCUSDT (got {_show(symbol)})"
        )
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
        tif = _TIF.get(raw_tif.lower()) if isinstance(raw_tif, str) and raw_tif.isascii() else None
        if tif is None:
            problems.append(f"time_in_force: one of GTC, IOC, FOK, PostOnly (got {_show(raw_tif)})")

    strategy_id = _optional_str(data, "strategy_id", problems)
    model_version = _optional_str(data, "model_version", problems)
    created_at = _timestamp(data.get("created_at"), problems)
    if limits.require_created_at and data.get("created_at") in (None, ""):
        problems.append("created_at: required (OM_REQUIRE_CREATED_AT is set)")

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
    if isinstance(value, str) and value.isascii():  # "MAR\u212aET" (Kelvin sign) is no market
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
    if result.copy_abs() >= _MAX_NUMBER:  # copy_abs: abs() would round to 28 digits
        problems.append(f"{key}: must be below 10^20 (got {_show(value)})")
        return None
    if _places(result) > _MAX_PLACES:
        problems.append(f"{key}: at most {_MAX_PLACES} decimal places (got {_show(value)})")
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
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH:
        problems.append(f"{key}: must be a string of at most {MAX_ID_LENGTH} characters")
        return None
    return value


def _timestamp(value: Any, problems: list[str]) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str) and len(value) > _MAX_TIMESTAMP_TEXT:
            raise ValueError
        if isinstance(value, int | Decimal) or (
            isinstance(value, str) and value.isascii() and value.isdigit()
        ):
            millis = Decimal(value)
            # Bounded before int(): "1e999999999" must not become a billion-digit integer.
            if not millis.is_finite() or not 0 <= millis < _MAX_EPOCH_MS:
                raise ValueError
            return datetime.fromtimestamp(int(millis) / 1000, tz=UTC)
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


def _places(value: Decimal) -> int:
    """Decimal places that matter (trailing zeros do not), without a context's rounding."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + zeros)) if any(digits) else 0


def _clean(text: str) -> bool:
    """No NUL (PostgreSQL text and JSONB refuse it) and no lone surrogate (not UTF-8)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _structure_problems(data: Mapping[str, Any]) -> list[str]:
    """Depth and characters of the whole document, keys and metadata included."""
    problems: list[str] = []
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(data, 1, ())]
    while stack and len(problems) < 5:
        value, depth, path = stack.pop()
        if isinstance(value, Mapping | list):
            if depth > MAX_DEPTH:
                problems.append(f"JSON nested deeper than {MAX_DEPTH} levels (at {_path(path)})")
                break
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and not _clean(key):
                    problems.append(f"a key holds NUL or a lone surrogate (at {_path(path)})")
                stack.append((item, depth + 1, (*path, key)))
        elif isinstance(value, str) and not _clean(value):
            problems.append(f"a string holds NUL or a lone surrogate (at {_path(path)})")
    return problems


def _path(path: tuple[Any, ...]) -> str:
    text = "".join(f"[{k}]" if isinstance(k, int) else f".{k!a}" for k in path)
    text = "$" + text
    return text if len(text) <= 80 else text[:77] + "..."


def signal_born(
    created_at: datetime | None, *, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """When a signal's age counts from: its ``created_at``; without one, the AMQP
    ``timestamp`` the producer stamped (never later than the first receipt); else the first
    receipt."""
    if created_at is not None:
        return created_at
    if sent_at is not None:
        return min(sent_at, received_at)
    return received_at


def timing_rejection(
    born: datetime, now: datetime, *, max_age: timedelta, clock_skew: timedelta
) -> Rejection | None:
    """The engine's one timing check: ``SIGNAL_FROM_FUTURE`` when ``born`` is more than the
    clock-skew allowance ahead of ``now``, ``SIGNAL_STALE`` when older than ``max_age``."""
    age = now - born
    if -age > clock_skew:
        return Rejection(
            code="SIGNAL_FROM_FUTURE",
            message=(
                "created_at is in the future by more than the clock-skew allowance; "
                "its age cannot be known"
            ),
            details={
                "ahead_seconds": f"{-age.total_seconds():.3f}",
                "clock_skew_seconds": f"{clock_skew.total_seconds():.3f}",
            },
            plugin="engine",
        )
    return stale_rejection(born, now, max_age=max_age)


def stale_rejection(born: datetime, now: datetime, *, max_age: timedelta) -> Rejection | None:
    """``SIGNAL_STALE`` when a signal born at ``born`` is older than ``max_age`` at ``now``:
    the one staleness check, at decision time and before an order is sent again."""
    age = now - born
    if age <= max_age:
        return None
    return Rejection(
        code="SIGNAL_STALE",
        message="the signal is older than the maximum signal age; not executed late",
        details={
            "age_seconds": f"{age.total_seconds():.3f}",
            "max_age_seconds": f"{max_age.total_seconds():.3f}",
        },
        plugin="engine",
    )
