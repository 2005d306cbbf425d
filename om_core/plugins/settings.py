"""Validate a plugin's own settings model from the config file and the environment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from om_core.plugins.errors import PluginLoadError

__all__ = ["build_plugin_settings", "env_prefix_for", "masked_settings"]


def env_prefix_for(name: str, target: Any) -> str:
    """``OM_PLUGIN_<NAME>_`` unless the plugin declares ``settings_env_prefix``."""
    prefix = getattr(target, "settings_env_prefix", None)
    if isinstance(prefix, str) and prefix:
        return prefix
    return f"OM_PLUGIN_{name.upper().replace('-', '_')}_"


def _env_value(raw: str) -> Any:
    # Lists and tables arrive as JSON; everything else stays a string for pydantic to
    # coerce (so "0.1" becomes Decimal("0.1") without passing through float).
    stripped = raw.strip()
    if stripped[:1] in "[{":
        try:
            return json.loads(stripped, parse_float=str)
        except json.JSONDecodeError:
            return raw
    return raw


def build_plugin_settings(
    name: str,
    target: Any,
    model: type[BaseModel],
    file_values: Mapping[str, Any],
    env: Mapping[str, str],
) -> BaseModel:
    prefix = env_prefix_for(name, target)
    values: dict[str, Any] = dict(file_values)
    for key, raw in env.items():
        if key.startswith(prefix):
            values[key[len(prefix) :].lower()] = _env_value(raw)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            secret = any(w in field.lower() for w in ("key", "secret", "password", "token"))
            shown = "***" if secret else repr(err.get("input"))
            problems.append(
                f"plugin {name!r} setting {field} ({prefix}{field.upper()}): {err['msg']}"
                f" (got {shown})"
            )
        raise PluginLoadError(name, "invalid settings", problems) from None


#: Setting names whose values are never shown (the same words the error messages mask).
_SECRET_WORDS = ("key", "secret", "password", "token", "passphrase")


def masked_settings(settings: BaseModel | None) -> dict[str, Any]:
    """A plugin's validated settings as JSON, every secret replaced by ``***``.

    A value is secret when its field name says so (``api_key``, ``api_secret``…) or when it
    is a ``SecretStr``/``SecretBytes``; nested tables are masked the same way.
    """
    if settings is None:
        return {}
    masked: dict[str, Any] = _mask(settings.model_dump(mode="python"))
    return masked


def _mask(value: Any, name: str = "") -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        return "***"
    if isinstance(value, Mapping):
        return {str(k): _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask(v, name) for v in value]
    if name and any(word in name.lower() for word in _SECRET_WORDS) and value not in (None, ""):
        return "***"
    if isinstance(value, BaseModel):
        return _mask(value.model_dump(mode="python"), name)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
