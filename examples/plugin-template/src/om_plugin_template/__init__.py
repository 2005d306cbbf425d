"""A plugin template: refuse signals for the symbols listed in ``blocked_symbols``.

Enable it with ``OM_PLUGINS=builtin,template`` and configure it in ``[plugins.template]``
or with ``OM_PLUGIN_TEMPLATE_BLOCKED_SYMBOLS='["DOGEUSDT"]'``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from om_plugins import DecisionContext, Rejection, Signal, hookimpl

#: The plugin API versions this plugin supports; the engine refuses to load it elsewhere.
om_api_version = ">=2,<3"


class TemplateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    blocked_symbols: list[str] = []


class TemplatePlugin:
    settings_model = TemplateSettings

    def __init__(self, settings: TemplateSettings | None = None) -> None:
        self.settings = settings or TemplateSettings()

    @hookimpl
    def om_check_signal(self, signal: Signal, context: DecisionContext) -> Rejection | None:
        if signal.symbol in self.settings.blocked_symbols:
            return Rejection(
                code="SYMBOL_BLOCKED",
                message=f"{signal.symbol} is blocked by the template plugin",
                details={"symbol": signal.symbol},
            )
        return None
