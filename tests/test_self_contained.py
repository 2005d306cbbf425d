"""Tests use only what is in the repository: no test, fixture or test kit names a path outside
it (Bybit's documented payloads are copied into tests/flow/bybit_examples)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: An absolute path into a machine's home, work or shared areas, or the reference notes.
OUTSIDE = re.compile(r"""["'](/work/|/home/|/root/|/srv/|/mnt/)|shared/reference""")


def test_no_test_reads_outside_the_repository() -> None:
    offenders = []
    for folder in ("tests", "om_plugins/testing"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == Path(__file__).resolve():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if OUTSIDE.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_documented_bybit_payloads_are_in_the_repository() -> None:
    examples = ROOT / "tests" / "flow" / "bybit_examples"
    listed = {
        line.split("\t", 1)[0]
        for line in (examples / "SOURCES.tsv").read_text(encoding="utf-8").splitlines()[1:]
        if line.strip()
    }
    present = {p.name for p in examples.glob("docs_*.json")}
    assert listed == present  # every copy says where it comes from
