"""Validate a plugin's own settings model from the config file and the environment.

A setting the model does not have is an error (with "did you mean …"), whatever the model's
own ``extra`` policy — unless it explicitly allows extras. A value in an environment variable
that starts like JSON (``[`` or ``{``) must be valid JSON unless its field is plain text.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from om_core.plugins.errors import PluginLoadError
from om_core.secret_files import SecretFileError, resolve_secret_files, secret_fields
from om_core.suggest import did_you_mean

__all__ = [
    "DEFAULT_ENV_PREFIX",
    "build_plugin_settings",
    "default_env_prefix",
    "env_prefix_for",
    "is_secret_field",
    "masked_settings",
]

DEFAULT_ENV_PREFIX = "OM_PLUGIN_"

_SECRET_WORDS = ("key", "secret", "password", "token", "passphrase")


def default_env_prefix(name: str) -> str:
    return f"{DEFAULT_ENV_PREFIX}{name.upper().replace('-', '_')}_"


def env_prefix_for(name: str, target: Any) -> str:
    """``OM_PLUGIN_<NAME>_`` unless the plugin declares ``settings_env_prefix``."""
    prefix = getattr(target, "settings_env_prefix", None)
    if isinstance(prefix, str) and prefix:
        return prefix
    return default_env_prefix(name)


def _annotation_parts(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return [part for arg in typing.get_args(annotation) for part in _annotation_parts(arg)]
    return [annotation]


def is_secret_field(model: type[BaseModel], field: str) -> bool:
    """A secret: a ``SecretStr`` field, or one whose name says so (``api_key``, ``token``)."""
    info = model.model_fields.get(field)
    if info is not None and SecretStr in _annotation_parts(info.annotation):
        return True
    return any(word in field.lower() for word in _SECRET_WORDS)


def _is_text(model: type[BaseModel], field: str) -> bool:
    info = model.model_fields.get(field)
    if info is None:
        return False
    parts = [p for p in _annotation_parts(info.annotation) if p is not type(None)]
    return bool(parts) and all(p in (str, SecretStr) for p in parts)


def _allows_extra(model: type[BaseModel]) -> bool:
    return model.model_config.get("extra") == "allow"


def _shown(model: type[BaseModel], field: str, value: Any) -> str:
    return "***" if is_secret_field(model, field) else repr(value)


def build_plugin_settings(
    name: str,
    target: Any,
    model: type[BaseModel],
    file_values: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    table: str | None = None,
) -> BaseModel:
    """The plugin's validated settings: the file's table overlaid with its variables.

    Raises :class:`PluginLoadError` listing every problem (unknown settings, invalid JSON,
    invalid values), one line each, naming plugin, setting and where it came from.
    """
    prefix = env_prefix_for(name, target)
    where_file = table or f"[plugin.{name}]"
    fields = list(model.model_fields)
    problems: list[str] = []
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in file_values.items():
        values[key] = value
        origin[key] = where_file
    for key, raw in sorted(env.items()):
        if not key.startswith(prefix):
            continue
        field = key[len(prefix) :].lower()
        origin[field] = key
        stripped = raw.strip()
        if stripped[:1] in ("[", "{") and not _is_text(model, field):
            # Lists and tables arrive as JSON; numbers stay strings for pydantic (so "0.1"
            # becomes Decimal("0.1") without passing through float).
            try:
                values[field] = json.loads(stripped, parse_float=str)
            except json.JSONDecodeError as exc:
                problems.append(
                    f"plugin {name!r} setting {field} ({key}): invalid JSON: {exc.msg} at "
                    f"column {exc.colno} (got {_shown(model, field, raw)})"
                )
                values.pop(field, None)
            continue
        values[field] = raw
    try:
        # ``<PREFIX><FIELD>_FILE`` (or ``<field>_file`` in the table) for SecretStr fields.
        values = resolve_secret_files(
            values, secret_fields(model), name_of=lambda field: f"{prefix}{field.upper()}"
        )
    except SecretFileError as exc:
        problems.extend(exc.problems)
    if not _allows_extra(model):
        for field in [f for f in values if f not in model.model_fields]:
            where = origin.get(field, field)
            if where.startswith(prefix):
                hint = did_you_mean(where, [prefix + f.upper() for f in fields])
            else:
                hint = did_you_mean(field, fields)
            known = ", ".join(fields) or "none"
            problems.append(
                f"plugin {name!r}: unknown setting {field!r} ({where}){hint}; its settings: {known}"
            )
            del values[field]
    try:
        settings = model.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            top = str(err["loc"][0]) if err["loc"] else ""
            where = origin.get(top) or (
                f"{prefix}{top.upper()} or {where_file}" if top else where_file
            )
            got = (
                ""
                if err["type"] == "missing"
                else f" (got {_shown(model, top or field, err.get('input'))})"
            )
            problems.append(f"plugin {name!r} setting {field} ({where}): {err['msg']}{got}")
    if problems:
        raise PluginLoadError(name, "invalid settings", problems)
    return settings


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
