"""``om replay``: recorded signals through the enabled plugins, on a fresh paper engine or as
a preview against the configured exchange."""

from __future__ import annotations

import json
from pathlib import Path

from tests.sdk.cli import om
from tests.sdk.installs import EXAMPLES

SAMPLE = EXAMPLES / "signals" / "sample.jsonl"

HEADER = "signal_id   outcome    side  type    qty    price    reasons"
EXPECTED = [
    HEADER,
    "sample-001  placed     buy   market  0.01   -        -",
    "sample-002  placed     sell  limit   0.32   3100.01  -",
    "sample-003  rejected   buy   -       -      -        risk:MAX_ORDER_NOTIONAL",
    "sample-004  rejected   buy   -       -      -        sizing:QTY_BELOW_MINIMUM",
    "sample-005  rejected   buy   -       -      -        engine:INSTRUMENT_UNAVAILABLE",
    "sample-006  invalid    hold  -       -      -        engine:INVALID_SIGNAL",
    "sample-007  placed     buy   market  0.008  -        -",
    "sample-008  rejected   buy   -       -      -        sizing:NOTIONAL_BELOW_MINIMUM",
    "sample-009  placed     sell  limit   2.5    151.24   -",
    "sample-010  rejected   sell  market  0.5    -        exchange:REDUCE_ONLY_REJECTED",
    "sample-001  duplicate  buy   market  0.01   -        -",
]


def test_replay_of_the_sample_prints_the_expected_table(tmp_path: Path) -> None:
    result = om("replay", str(SAMPLE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED
    # A replay keeps nothing: no database file appears where it ran.
    assert list(tmp_path.iterdir()) == []


def test_replay_json_prints_one_object_per_signal(tmp_path: Path) -> None:
    result = om("replay", "--json", str(SAMPLE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["line"], r["signal_id"], r["outcome"]) for r in rows][:3] == [
        (1, "sample-001", "placed"),
        (2, "sample-002", "placed"),
        (3, "sample-003", "rejected"),
    ]
    limit = rows[1]["orders"][0]
    assert {k: limit[k] for k in ("side", "order_type", "qty", "price", "time_in_force")} == {
        "side": "sell",
        "order_type": "limit",
        "qty": "0.32",
        "price": "3100.01",
        "time_in_force": "GTC",
    }
    assert rows[2]["reasons"] == [
        {
            "plugin": "risk",
            "code": "MAX_ORDER_NOTIONAL",
            "message": "order value 300000.000 is above the limit 100000",
            "details": {"limit": "100000", "actual": "300000.000"},
        }
    ]
    assert rows[5]["outcome"] == "invalid" and rows[5]["reasons"][0]["code"] == "INVALID_SIGNAL"
    assert "side: one of buy, sell" in rows[5]["reasons"][0]["message"]


def test_plugins_option_and_plugin_settings_from_the_environment(tmp_path: Path) -> None:
    without_risk = om("replay", "--plugins", "paper,order_type,sizing", str(SAMPLE), cwd=tmp_path)
    assert without_risk.stdout.splitlines()[3].split()[:5] == [
        "sample-003",
        "placed",
        "buy",
        "market",
        "5",
    ]
    strict = om("replay", str(SAMPLE), cwd=tmp_path, OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL="500")
    assert strict.stdout.splitlines()[1].endswith("risk:MAX_ORDER_NOTIONAL")


def test_created_at_is_ignored_unless_kept(tmp_path: Path) -> None:
    kept = om("replay", "--keep-created-at", str(SAMPLE), cwd=tmp_path)
    assert kept.stdout.splitlines()[2].split() == [
        "sample-002",
        "rejected",
        "sell",
        "-",
        "-",
        "-",
        "engine:SIGNAL_STALE",
    ]


def test_replay_preview_judges_each_signal_alone_and_sends_nothing(tmp_path: Path) -> None:
    result = om("replay", "--preview", str(SAMPLE), cwd=tmp_path, OM_PLUGIN_PAPER_RANDOM_WALK="0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "signal_id   outcome      side  type    qty    price    reasons"
    assert [line.split()[1] for line in lines[1:]] == [
        "would_place",
        "would_place",
        "rejected",
        "rejected",
        "rejected",
        "invalid",
        "would_place",
        "rejected",
        "would_place",
        "would_place",  # the exchange is never asked, so it cannot refuse
        "would_place",  # nothing was recorded, so the repeated id is new again
    ]
    assert lines[2] == "sample-002  would_place  sell  limit   0.32   3100.01  -"
    assert "previewing against an empty state" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unreadable_file_and_broken_plugin_list_fail_cleanly(tmp_path: Path) -> None:
    missing = om("replay", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    unknown = om("replay", "--plugins", "builtin,not_installed", str(SAMPLE), cwd=tmp_path)
    assert unknown.returncode == 2  # a configuration mistake, like every plugin-loading error
    assert "error: plugin 'not_installed': is enabled but not installed" in unknown.stderr
