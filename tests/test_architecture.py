"""The exchange boundary, checked: the engine speaks no exchange's dialect.

The import rules are import-linter contracts in ``pyproject.toml`` (also run by
``make lint``); the vocabulary rule is a scan of the engine's source.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Bybit's field names and status strings: they belong in plugins_builtin/bybit only.
BYBIT_WORDS = [
    "orderLinkId",
    "orderStatus",
    "cumExecQty",
    "cumExecValue",
    "cumExecFee",
    "cumFeeDetail",
    "execId",
    "execQty",
    "execFee",
    "leavesQty",
    "positionIdx",
    "retCode",
    "marketUnit",
    "feeCurrency",
    "rejectReason",
    "cancelType",
    "PartiallyFilled",
    "PartiallyFilledCanceled",
    "Untriggered",
    "EC_",
    "CancelBy",
    "X-Bapi",
]
_WORD = re.compile("|".join(re.escape(w) for w in BYBIT_WORDS))


def test_the_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is part of the test extra"
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_bybit_vocabulary_in_the_engine() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "om_core").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _WORD.search(line)
    ]
    assert found == []


def test_the_vocabulary_scan_sees_bybit_words() -> None:
    """Guards the scan above: the Bybit plugin itself is full of them."""
    decoder = (ROOT / "plugins_builtin" / "bybit" / "decode.py").read_text(encoding="utf-8")
    assert _WORD.search(decoder)
