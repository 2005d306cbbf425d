"""Order Manager risk plugin ``trading_hours``: trade only inside a UTC window, and stop
opening risk once the realized loss reaches a limit."""

from __future__ import annotations

from om_risk_trading_hours.plugin import TradingHoursPlugin, TradingHoursSettings, realized_loss

__all__ = ["TradingHoursPlugin", "TradingHoursSettings", "realized_loss"]
