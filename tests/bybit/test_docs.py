"""docs/bybit.md's code tables say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from plugins_builtin.bybit.codes import CANCEL_TYPES, REJECT_REASONS, RET_CODES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "bybit.md").read_text(encoding="utf-8")


def _rows(heading: str) -> list[tuple[str, str]]:
    section = DOC.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (
            len(cells) == 2
            and not set(cells[0]) <= set("-")
            and cells[0]
            not in (
                "reason_code",
                "`rejectReason`",
                "`cancelType`",
            )
        ):
            rows.append((cells[0], cells[1]))
    return rows


def test_the_ret_code_table_is_the_codes_table() -> None:
    documented: dict[int, str] = {}
    for reason, codes in _rows("## Rejection codes"):
        for code in re.findall(r"(?<![\w-])-?\d+(?![\w])", codes.replace("HTTP 4", "HTTP_4")):
            documented[int(code)] = reason.strip("`")
    assert documented == {code: reason.value for code, reason in RET_CODES.items()}


def test_the_reason_tables_are_the_codes_tables() -> None:
    documented: dict[str, str] = {}
    for names, reason in _rows("**Why an order ended**"):
        for name in re.findall(r"`(\w+)`", names):
            documented[name] = reason.split()[0].strip("`")
    expected = {k: v.value for k, v in {**REJECT_REASONS, **CANCEL_TYPES}.items()}
    assert documented == expected
