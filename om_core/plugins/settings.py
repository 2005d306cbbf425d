"""Validate a plugin's own settings model from the config file and the environment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from om_core.plugins.errors import PluginLoadError
from om_core.secret_files import SecretFileError, resolve_secret_files, secret_fields

__all__ = ["build_plugin_settings", "env_prefix_for"]


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
        # ``<PREFIX><FIELD>_FILE`` (or ``<field>_file`` in the table) for SecretStr fields.
        values = resolve_secret_files(
            values, secret_fields(model), name_of=lambda field: f"{prefix}{field.upper()}"
        )
    except SecretFileError as exc:
        raise PluginLoadError(name, "invalid settings", exc.problems) from None
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
