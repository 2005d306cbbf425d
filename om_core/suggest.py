""" "Did you mean …" for names a user typed: settings, plugin names, environment variables."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]


def closest(word: str, candidates: Iterable[str], *, cutoff: float = 0.75) -> str | None:
    """The candidate most like ``word`` (case-insensitive), if any is close enough."""
    by_folded: dict[str, str] = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.lower(), candidate)
    found = difflib.get_close_matches(word.lower(), list(by_folded), n=1, cutoff=cutoff)
    return by_folded[found[0]] if found else None


def did_you_mean(word: str, candidates: Iterable[str], *, cutoff: float = 0.75) -> str:
    """``"; did you mean 'x'?"`` for a near miss, else ``""`` — ready to append to a message."""
    match = closest(word, candidates, cutoff=cutoff)
    return f"; did you mean {match!r}?" if match is not None else ""
