"""Two signal-level risk rules (``om_check_signal``: every risk plugin votes).

* ``OUTSIDE_TRADING_HOURS`` — ``context.now`` (UTC) is outside ``[start, end)`` on an
  allowed weekday. A window whose ``start`` is after its ``end`` spans midnight
  (``22:00``–``06:00``); the weekday is the one the window opened on.
* ``MAX_DAILY_LOSS`` — today's realized loss net of fees, over every symbol, is at or above
  ``max_daily_loss``: ``context.today`` (plugin API 2.0), the trading day starting at the
  engine's ``OM_TRADING_DAY_START`` (UTC midnight by default).

Reduce-only signals pass both rules unless ``allow_reduce_only`` is off: shrinking a
position is how risk gets smaller, and must stay possible after hours or after a loss.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from om_plugins import DecisionContext, Rejection, Signal, hookimpl

__all__ = ["TradingHoursPlugin", "TradingHoursSettings", "realized_loss"]

#: ``context.today`` is plugin API 2.0.
om_api_version = ">=2,<3"

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TradingHoursSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time | None = Field(
        default=None, description="Window opens (UTC, e.g. 08:00). Unset: no window."
    )
    end: time | None = Field(default=None, description="Window closes (UTC, exclusive).")
    weekdays: list[str] = Field(
        default_factory=lambda: list(_DAYS),
        description="Days the window opens on: mon … sun (comma-separated in the env).",
    )
    max_daily_loss: Decimal | None = Field(
        default=None, gt=0, description="Today's realized loss (USDT, positive) at which to stop."
    )
    allow_reduce_only: bool = Field(
        default=True, description="Let reduce-only signals through both rules."
    )

    @field_validator("weekdays", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("weekdays")
    @classmethod
    def _known_days(cls, value: list[str]) -> list[str]:
        days = [day.lower()[:3] for day in value]
        unknown = [day for day in days if day not in _DAYS]
        if unknown:
            raise ValueError(f"unknown weekday(s) {unknown}; use {', '.join(_DAYS)}")
        return days

    @field_validator("start", "end")
    @classmethod
    def _naive(cls, value: time | None) -> time | None:
        # Times are UTC by definition here; an explicit offset would only be confusing.
        if value is not None and value.tzinfo is not None:
            raise ValueError("give the time without a timezone: it is always UTC")
        return value


def realized_loss(context: DecisionContext) -> Decimal:
    """Today's realized loss net of fees, over every symbol (positive when losing).

    ``context.today`` is the engine's figure for the current trading day: what every
    position realized and paid in fees since the day began, flat positions included.
    """
    return -context.today.total.net


def _in_window(now: datetime, settings: TradingHoursSettings) -> bool:
    start, end = settings.start, settings.end
    moment = now.astimezone(UTC)
    if start is None or end is None:
        return _DAYS[moment.weekday()] in settings.weekdays
    clock = moment.time().replace(tzinfo=None)
    if start < end:
        opened_on = moment
        inside = start <= clock < end
    elif start > end:  # spans midnight: after start today, or before end (opened yesterday)
        inside = clock >= start or clock < end
        opened_on = moment if clock >= start else moment - timedelta(days=1)
    else:
        opened_on, inside = moment, True
    return inside and _DAYS[opened_on.weekday()] in settings.weekdays


class TradingHoursPlugin:
    settings_model = TradingHoursSettings

    def __init__(self, settings: TradingHoursSettings | None = None) -> None:
        self.settings = settings or TradingHoursSettings()

    @hookimpl
    def om_check_signal(self, signal: Signal, context: DecisionContext) -> list[Rejection]:
        s = self.settings
        if signal.reduce_only and s.allow_reduce_only:
            return []
        found = []
        if not _in_window(context.now, s):
            found.append(
                Rejection(
                    code="OUTSIDE_TRADING_HOURS",
                    message=f"{context.now.astimezone(UTC):%a %H:%M} UTC is outside trading hours",
                    details={
                        "now": context.now.astimezone(UTC).isoformat(),
                        "start": s.start.isoformat() if s.start else "",
                        "end": s.end.isoformat() if s.end else "",
                        "weekdays": ",".join(s.weekdays),
                    },
                )
            )
        if s.max_daily_loss is not None:
            loss = realized_loss(context)
            if loss >= s.max_daily_loss:
                found.append(
                    Rejection(
                        code="MAX_DAILY_LOSS",
                        message=f"today's realized loss {loss} reached the limit "
                        f"{s.max_daily_loss}",
                        details={
                            "limit": str(s.max_daily_loss),
                            "actual": str(loss),
                            "day_start": context.today.start.isoformat(),
                        },
                    )
                )
        return found
