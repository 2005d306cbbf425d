"""Stored JSON served defensively: whatever a JSON column holds, a route can answer with it.

Signals' payloads, rejection reasons and other JSON columns were stored by earlier versions
(before the contract bounded size and depth) or written by hand. Served as they are, a payload
nested 900 levels deep exceeds the serializer's recursion limit, a lone surrogate (``"\\ud800"``)
cannot be encoded as UTF-8, ``NaN`` is not JSON, and a 10 MB payload is sent whole. Every route
that returns stored JSON passes it through :func:`safe_json` first, which returns a copy that

* nests at most :data:`MAX_DEPTH` levels (deeper values become :data:`TRUNCATED`),
* holds at most about :data:`MAX_BYTES` of JSON (strings are cut, containers end with
  :data:`TRUNCATED`),
* has every lone surrogate replaced with U+FFFD and every non-finite number as a string,

and says whether anything was cut or replaced, so the answer can mark it
(``payload_truncated``).
Nothing is ever recursed into beyond :data:`MAX_DEPTH`, so the walk itself is bounded.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi.responses import JSONResponse

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "TRUNCATED",
    "SafeJSONResponse",
    "Served",
    "clean_text",
    "safe_json",
    "safe_mapping",
]

#: Deeper than any valid signal (the contract allows 32 levels); deeper values are cut.
MAX_DEPTH = 64
#: About the largest stored JSON value served (the signal contract's 64 KiB, with room).
MAX_BYTES = 128 * 1024
#: What replaces a value or the rest of a container that was cut.
TRUNCATED = "…(truncated)"

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` with every lone surrogate replaced by U+FFFD (it cannot be UTF-8 encoded)."""
    return _SURROGATE.sub("\ufffd", value)


@dataclass(frozen=True, slots=True)
class Served:
    value: Any
    truncated: bool


class _Walk:
    def __init__(self, max_depth: int, max_bytes: int) -> None:
        self.max_depth = max_depth
        self.budget = max_bytes
        self.truncated = False

    def _cut(self) -> str:
        self.truncated = True
        return TRUNCATED

    def _text(self, value: str) -> str:
        text = clean_text(value)
        if text != value:
            self.truncated = True
        if len(text) + 2 > self.budget:
            self.truncated = True
            text = text[: max(self.budget - 2, 0)] + TRUNCATED
        self.budget -= len(text) + 2
        return text

    def value(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, bool):
            self.budget -= 5
            return value
        if isinstance(value, int):
            self.budget -= 20
            return value
        if isinstance(value, float):
            self.budget -= 24
            if math.isfinite(value):
                return value
            self.truncated = True
            return str(value)
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, Decimal):
            return self._text(format(value, "f") if value.is_finite() else str(value))
        if isinstance(value, dict | list | tuple):
            if depth >= self.max_depth:
                return self._cut()
            return self._container(value, depth + 1)
        return self._text(str(value))

    def _container(self, value: dict[Any, Any] | list[Any] | tuple[Any, ...], depth: int) -> Any:
        self.budget -= 2
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if self.budget <= 0:
                    out[TRUNCATED] = self._cut()
                    break
                name = self._text(str(key))
                if name in out:  # two keys that differ only in their surrogates
                    continue
                out[name] = self.value(item, depth)
            return out
        items: list[Any] = []
        for item in value:
            if self.budget <= 0:
                items.append(self._cut())
                break
            items.append(self.value(item, depth))
        return items


def safe_json(value: Any, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> Served:
    """A copy of ``value`` that any JSON encoder can write; ``truncated`` if anything was cut."""
    walk = _Walk(max_depth, max_bytes)
    out = walk.value(value, 0)
    return Served(out, walk.truncated)


def safe_mapping(value: Any, *, max_bytes: int = MAX_BYTES) -> Served:
    """:func:`safe_json` of a stored JSON object; anything else stored serves as ``{}``."""
    if not isinstance(value, dict):
        return Served({}, value is not None and value != {})
    return safe_json(value, max_bytes=max_bytes)


class SafeJSONResponse(JSONResponse):
    """The API's JSON answers, as a last line of defence: text that cannot be UTF-8 encoded
    (a lone surrogate a route did not clean) is replaced, never a 500 while encoding."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        )
        return text.encode("utf-8", errors="replace")
