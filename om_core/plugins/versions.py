"""A minimal version-range matcher for ``om_api_version`` (``">=1.0,<2"``), so plugin API
compatibility needs no extra dependency."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<|~=)?\s*(\d+(?:\.\d+)*)\s*$")
_OPS: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


def _parse(version: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (3 - len(parts))


def version_matches(version: str, spec: str) -> bool:
    """True when ``version`` satisfies every comma-separated clause of ``spec``.

    A bare version (``"1"``) means ``~=``-like "same major". Raises ``ValueError`` on
    unreadable specs.
    """
    have = _parse(version)
    for clause in spec.split(","):
        match = _CLAUSE.match(clause)
        if match is None:
            raise ValueError(f"unreadable version range {spec!r}")
        op, raw = match.group(1) or "~=", match.group(2)
        want = _parse(raw)
        if op == "~=":
            if have[0] != want[0] or have < want:
                return False
        elif not _OPS[op](have, want):
            return False
    return True
