"""Column types that keep money exact and time in UTC on every database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from om_core.clock import utcnow as _clock_now

__all__ = ["SCALE", "DecimalType", "UTCDateTime", "strip_zeros", "utcnow"]

#: Decimal places every money and quantity column keeps, on every database.
SCALE = 18


def utcnow() -> datetime:
    """Now, in UTC: the engine's clock (:mod:`om_core.clock`)."""
    return _clock_now()


class DecimalType(TypeDecorator[Decimal]):
    """``NUMERIC(38, 18)`` on PostgreSQL; text on SQLite, whose NUMERIC is a float."""

    impl = sa.Numeric(38, SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(64))
        return dialect.type_descriptor(sa.Numeric(38, SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("money and quantities must be Decimal, never float")
        value = Decimal(value)
        if not value.is_finite():
            raise ValueError(f"{value} cannot be stored as money")
        exponent = strip_zeros(value).as_tuple().exponent
        if isinstance(exponent, int) and exponent < -SCALE:
            # PostgreSQL would round silently and SQLite would not: refuse on both.
            raise ValueError(f"{value} has more than {SCALE} decimal places")
        if dialect.name == "sqlite":
            return format(value, "f")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        result = Decimal(value) if not isinstance(value, Decimal) else value
        return strip_zeros(result)


#: strip_zeros results by value: the same quantities and prices come back on every read,
#: and the exact-context arithmetic costs ~15x a lookup. Equal non-zero decimals strip to
#: the same digits, so a value may stand for any equal one; zero keeps its sign apart.
_STRIPPED: dict[Decimal, Decimal] = {}
_STRIPPED_MAX = 8192


def strip_zeros(value: Decimal) -> Decimal:
    """Drop trailing zeros (NUMERIC pads to the scale) without losing a digit.

    Decimal arithmetic rounds to the context precision (28 digits by default) but the
    column holds 38, so the context is sized to the value.
    """
    if not value or not value.is_finite():
        return _strip(value)
    stripped = _STRIPPED.get(value)
    if stripped is None:
        if len(_STRIPPED) >= _STRIPPED_MAX:
            _STRIPPED.clear()
        stripped = _STRIPPED[value] = _strip(value)
    return stripped


def _strip(value: Decimal) -> Decimal:
    _sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return value
    exact = Context(prec=max(len(digits) + abs(exponent), 1))
    if value == value.to_integral_value():
        return value.quantize(Decimal(1), context=exact)
    return value.normalize(exact)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; naive datetimes are refused, not guessed."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError("timestamps must be timezone-aware datetimes")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        result: datetime = value
        if result.tzinfo is None:
            return result.replace(tzinfo=UTC)
        return result.astimezone(UTC)
