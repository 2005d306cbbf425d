"""Tests use only what is in the repository: no test, fixture or test kit names a path outside
it (Bybit's documented payloads are copied into tests/flow/bybit_examples)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The top-level folders of a machine's home, work and shared areas, and the folder of the
#: reference notes beside the repository. Named here as words, not as paths, so this guard,
#: which reads nothing but the repository's own files, names no outside path itself.
_MACHINE_AREAS = ("work", "home", "root", "srv", "mnt")
_NOTES = ("shared", "reference")
#: An absolute path into one of those areas, or any mention of the reference notes' folder.
OUTSIDE = re.compile("[\"']/(?:" + "|".join(_MACHINE_AREAS) + ")/|" + re.escape("/".join(_NOTES)))


def test_no_test_reads_outside_the_repository() -> None:
    offenders = []
    for folder in ("tests", "om_plugins/testing"):
        for path in sorted((ROOT / folder).rglob("*.py")):
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


def test_the_guard_sees_an_outside_path() -> None:
    # The guard must be able to fail: each kind of outside reference is caught.
    for line in (
        'open("/' + 'work/x")',
        "Path('/" + "home/u')",
        "'../" + "shared/" + "reference/a.md'",
    ):
        assert OUTSIDE.search(line), line
    assert not OUTSIDE.search('ROOT / "tests" / "flow"')
