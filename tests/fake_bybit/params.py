"""Strict readers for request parameters, failing the way Bybit does (``retCode`` 10001)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tests.fake_bybit.model import BybitError

_NUMBER = re.compile(r"\d+(\.\d+)?")


def parse_decimal(text: str) -> Decimal | None:
    """A plain non-negative decimal string (``"0.001"``); ``None`` for anything else.

    Bybit takes numbers as strings; exponent forms such as ``"1e-05"`` (what ``str(0.00001)``
    gives) are not numbers to it.
    """
    if not _NUMBER.fullmatch(text):
        return None
    return Decimal(text)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "number"


class BodyParams:
    """Typed access to a JSON request body. ``null`` counts as absent."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self._body = body

    def _get(self, name: str, kind: str) -> Any:
        value = self._body.get(name)
        if value is None:
            return None
        if _kind(value) != kind:
            raise BybitError(10001, f"params error: {name} must be a {kind}, got {_kind(value)}")
        return value

    def text(self, name: str, default: str = "") -> str:
        value = self._get(name, "string")
        return default if value is None else str(value)

    def required(self, name: str) -> str:
        value = self.text(name)
        if not value:
            raise BybitError(10001, f"params error: {name} is required")
        return value

    def integer(self, name: str, default: int) -> int:
        value = self._get(name, "number")
        if value is None:
            return default
        if not isinstance(value, int):
            raise BybitError(10001, f"params error: {name} must be an integer")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, "bool")
        return default if value is None else bool(value)


class QueryParams:
    """Query-string parameters (already percent-decoded by the server)."""

    def __init__(self, query: Mapping[str, str]) -> None:
        self._query = query

    def text(self, name: str) -> str:
        return self._query.get(name, "")

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        text = self._query.get(name, "")
        if text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise BybitError(10001, f"params error: {name} invalid") from None
        if not low <= value <= high:
            raise BybitError(10001, f"params error: {name} must be in [{low}, {high}]")
        return value
