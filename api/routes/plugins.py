"""The plugins this service runs: enabled ones with their hooks (in call order) and their
settings with every secret masked; installed ones that are not enabled."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.deps import ReadKey, ServiceDep, api_v1_router
from om_core.plugins import discover, hooks_of
from om_core.plugins.settings import masked_settings
from om_core.service import Service

__all__ = ["PluginList", "plugin_list", "router"]

router = api_v1_router("plugins")


class PluginOut(BaseModel):
    name: str
    enabled: bool
    distribution: str = Field(description="The package that provides it, and its version.")
    version: str
    hooks: list[str] = Field(description="The hooks it implements.")
    settings: dict[str, Any] = Field(description="Its validated settings; secrets are `***`.")


class HookOrder(BaseModel):
    hook: str
    plugins: list[str] = Field(description="First called first.")


class PluginList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "plugins": [
                        {
                            "name": "risk",
                            "enabled": True,
                            "distribution": "order-manager",
                            "version": "0.1.0",
                            "hooks": ["om_check_order", "om_check_signal"],
                            "settings": {"max_order_notional": "2500"},
                        }
                    ],
                    "call_order": [
                        {"hook": "om_check_signal", "plugins": ["my_risk", "risk"]},
                    ],
                }
            ]
        }
    )

    plugins: list[PluginOut] = Field(
        description="Enabled plugins in the order enabled, then the rest."
    )
    call_order: list[HookOrder] = Field(description="Per hook, the enabled plugins in call order.")


def plugin_list(service: Service) -> PluginList:
    loaded = service.plugins
    found = {p.name: p for p in discover()}
    items = []
    for name in loaded.objects:
        info = found.get(name)
        items.append(
            PluginOut(
                name=name,
                enabled=True,
                distribution=info.distribution if info else "?",
                version=info.version if info else "?",
                hooks=hooks_of(loaded.pm, name),
                settings=masked_settings(loaded.settings.get(name)),
            )
        )
    for name, info in found.items():
        if name not in loaded.objects:
            items.append(
                PluginOut(
                    name=name,
                    enabled=False,
                    distribution=info.distribution,
                    version=info.version,
                    hooks=[],
                    settings={},
                )
            )
    order = []
    for caller in sorted(loaded.pm.hook.__dict__.values(), key=lambda c: c.name):
        impls = [i.plugin_name for i in reversed(caller.get_hookimpls())]
        if impls:
            order.append(HookOrder(hook=caller.name, plugins=impls))
    return PluginList(plugins=items, call_order=order)


@router.get(
    "/plugins",
    summary="Plugins: enabled ones with hooks in call order and masked settings",
    description="What `om plugins list --hooks` prints, for the running service.",
)
async def get_plugins(_key: ReadKey, service: ServiceDep) -> PluginList:
    return plugin_list(service)
