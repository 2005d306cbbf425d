"""Order Manager sizing plugin ``volatility_sizing``: risk a fixed budget per trade, sized by
the ATR the model sends in ``metadata["atr"]``."""

from __future__ import annotations

from om_sizing_volatility.plugin import VolatilitySizingPlugin, VolatilitySizingSettings

__all__ = ["VolatilitySizingPlugin", "VolatilitySizingSettings"]
