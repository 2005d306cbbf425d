"""The ``template`` plugin: it refuses signals for the symbols listed in `blocked_symbols` (none
by default).

Enable it with ``OM_PLUGINS=builtin,template`` and configure it in ``[plugin.template]`` or with
``OM_PLUGIN_TEMPLATE_<FIELD>`` variables; ``om plugins show template`` prints its settings.
Decision hooks must be quick, synchronous and pure: no I/O, no state that changes their answer.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from om_plugins import DecisionContext, Rejection, Signal, hookimpl

__all__ = ["TemplatePlugin", "TemplateSettings"]

#: The plugin API versions this plugin supports; the engine refuses to load it elsewhere.
om_api_version = ">=2,<3"


class TemplateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # a typo is an error, not ignored

    blocked_symbols: list[str] = Field(
        default_factory=list, description="Symbols to refuse, e.g. DOGEUSDT."
    )


class TemplatePlugin:
    settings_model = TemplateSettings

    def __init__(self, settings: TemplateSettings | None = None) -> None:
        self.settings = settings or TemplateSettings()

    @hookimpl
    def om_check_signal(self, signal: Signal, context: DecisionContext) -> Rejection | None:
        """Every plugin votes: a Rejection refuses the signal, None allows it."""
        if signal.symbol in self.settings.blocked_symbols:
            return Rejection(
                code="SYMBOL_BLOCKED",
                message=f"{signal.symbol} is blocked by the template plugin",
                details={"symbol": signal.symbol},
            )
        return None
