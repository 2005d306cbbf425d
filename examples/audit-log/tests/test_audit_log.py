import json
from pathlib import Path

from om_plugins.testing import EngineHarness


def read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_order_event_is_written_by_the_time_the_service_stopped(tmp_path: Path) -> None:
    log = tmp_path / "audit" / "events.jsonl"
    settings = {"audit_log": {"path": str(log)}}
    with EngineHarness(plugins=["builtin", "audit_log"], settings=settings) as harness:
        placed = harness.run_sync(signal_id="a-1", symbol="BTCUSDT", side="buy", qty="0.001")
        rejected = harness.run_sync(signal_id="a-2", symbol="BTCUSDT", side="buy", qty="10")
        assert placed.placed and rejected.rejected
    events = read(log)
    assert [(e["event_type"], e["signal_id"]) for e in events] == [
        ("order.created", "a-1"),
        ("signal.rejected", "a-2"),
    ]
    order = events[0]["order"]
    assert isinstance(order, dict) and order["qty"] == "0.001"  # exact, as a string


def test_event_types_filter(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    env = {
        "OM_PLUGIN_AUDIT_LOG_PATH": str(log),
        "OM_PLUGIN_AUDIT_LOG_EVENT_TYPES": '["signal.rejected"]',
    }
    with EngineHarness(plugins=["builtin", "audit_log"], env=env) as harness:
        harness.run_sync(signal_id="b-1", symbol="BTCUSDT", side="buy", qty="0.001")
        harness.run_sync(signal_id="b-2", symbol="BTCUSDT", side="buy", qty="10")
    assert [e["signal_id"] for e in read(log)] == ["b-2"]
