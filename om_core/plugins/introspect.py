"""What a plugin's settings model says about itself — types, defaults, descriptions,
variables — and what a configuration makes of it. Used by ``om plugins show`` and by the
generated reference of the built-in plugins' settings (:mod:`om_core.plugins.reference`)."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from om_core.plugins.settings import env_prefix_for, is_secret_field

__all__ = [
    "SettingDoc",
    "nested_models",
    "render_value",
    "setting_docs",
    "type_text",
]

_NAMES: dict[Any, str] = {
    bool: "true/false",
    Decimal: "decimal",
    int: "integer",
    float: "number",
    str: "text",
    SecretStr: "secret text",
    Path: "path",
    time: "time of day (HH:MM, UTC)",
    datetime: "date and time (ISO 8601)",
}


@dataclass(frozen=True, slots=True)
class SettingDoc:
    """One setting of a plugin, as documented and (optionally) as configured."""

    name: str
    type: str
    default: str
    required: bool
    description: str
    secret: bool
    env: str
    value: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "required": self.required,
            "description": self.description,
            "secret": self.secret,
            "env": self.env,
            "value": self.value,
            "source": self.source,
        }


def _parts(annotation: Any) -> tuple[list[Any], bool]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(annotation)
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], False


def type_text(annotation: Any) -> str:
    """A type for humans: ``decimal or unset``, ``list of text``, ``"cap" | "reject"``."""
    parts, optional = _parts(annotation)
    text = " or ".join(_one_type(part) for part in parts)
    return f"{text} or unset" if optional else text


def _one_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (list, tuple, set, frozenset, Sequence):
        return f"list of {type_text(args[0])}" if args else "list"
    if origin in (dict, Mapping):
        return f"table of {type_text(args[1])}" if len(args) == 2 else "table"
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return " | ".join(json.dumps(m.value) for m in annotation)
        if issubclass(annotation, BaseModel):
            return annotation.__name__
        for kind, name in _NAMES.items():
            if issubclass(annotation, kind):
                return name
        return annotation.__name__
    return str(annotation)


def render_value(value: Any) -> str:
    """A value as one would write it in the config file (decimals as strings: exact)."""
    return json.dumps(_plain(value), ensure_ascii=False) if value is not None else "unset"


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, Decimal | Path):
        return str(value)
    if isinstance(value, time):
        return value.isoformat(timespec="minutes")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, SecretStr):
        return "***"
    if isinstance(value, BaseModel):
        return {k: _plain(v) for k, v in value if v is not None}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def _default(info: FieldInfo) -> tuple[str, bool]:
    if info.is_required():
        return "required", True
    return render_value(info.get_default(call_default_factory=True)), False


def _description(info: FieldInfo) -> str:
    return " ".join((info.description or "").split())


def nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Settings models used inside ``model`` (e.g. the paper exchange's instrument rules)."""
    found: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.append(annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    for info in model.model_fields.values():
        visit(info.annotation)
    return found


def setting_docs(
    name: str,
    target: Any,
    model: type[BaseModel],
    *,
    settings: BaseModel | None = None,
    table: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[SettingDoc]:
    """Every setting of ``model``; with ``settings`` (validated), its value and where it
    came from (a variable, the config file's table, or the default). Secrets are masked."""
    prefix = env_prefix_for(name, target)
    docs = []
    for field_name, info in model.model_fields.items():
        default, required = _default(info)
        secret = is_secret_field(model, field_name)
        variable = f"{prefix}{field_name.upper()}"
        value = source = None
        if settings is not None:
            current = getattr(settings, field_name)
            value = ("***" if current is not None else "unset") if secret else render_value(current)
            if env is not None and variable in env:
                source = variable
            elif table is not None and field_name in table:
                source = f"[plugin.{name}]"
            else:
                source = "default"
        docs.append(
            SettingDoc(
                name=field_name,
                type=type_text(info.annotation),
                default="unset" if secret and default not in ("required", "unset") else default,
                required=required,
                description=_description(info),
                secret=secret,
                env=variable,
                value=value,
                source=source,
            )
        )
    return docs


def model_rows(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(setting, type, default, meaning) of a nested model's fields."""
    rows = []
    for field_name, info in model.model_fields.items():
        default, _ = _default(info)
        rows.append((field_name, type_text(info.annotation), default, _description(info)))
    return rows
