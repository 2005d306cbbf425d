"""A decision hook that blocks does not freeze the service: the engine decides in a worker
thread while the event loop keeps serving; the hook's time is in ``/metrics`` and over its
budget it is a WARNING naming plugin, hook and duration."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from om_core.signals.contract import parse_signal
from om_plugins import hookimpl
from tests.api.conftest import api_for


class Blocking:
    """Blocks like a hook that sleeps or waits on the network, until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    @hookimpl
    def om_check_signal(self, signal: Any, context: Any) -> None:
        self.entered.set()
        self.release.wait(10)
        time.sleep(0.03)  # over the 20 ms budget whatever the machine
        self.returned.set()
        return None


def _hook_count(text: str, plugin: str, hook: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "om_plugin_hook_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count") and sample.labels == {
                    "plugin": plugin,
                    "hook": hook,
                }:
                    return sample.value
    return 0.0


async def test_a_blocking_hook_does_not_freeze_the_service(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    payload = {"signal_id": "slow-1", "symbol": "BTCUSDT", "side": "buy", "qty": "0.001"}
    caplog.set_level(logging.WARNING, logger="om_core.plugins")
    async with api_for(sqlite_url, env={"OM_HOOK_BUDGET_MS": "20"}) as api:
        gate = Blocking()
        api.stack.service.plugins.pm.register(gate, name="blocking")
        task = asyncio.create_task(
            api.stack.service.processor.process(parse_signal(payload), payload)
        )
        assert await asyncio.to_thread(gate.entered.wait, 10), "the hook was never called"

        # The hook is blocked; the event loop is not.
        async with asyncio.timeout(5):
            health = await api.client.get("/health")
        assert health.status_code == 200
        assert not gate.returned.is_set(), "/health waited for the hook"

        gate.release.set()
        async with asyncio.timeout(30):
            outcome = await task
        assert outcome.status == "placed"
        metrics = await api.client.get("/metrics")
        assert _hook_count(metrics.text, "blocking", "om_check_signal") == 1
        assert _hook_count(metrics.text, "risk", "om_check_signal") >= 1

    (warning,) = [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "blocking" in r.getMessage()
    ]
    assert warning.startswith("plugin 'blocking' hook om_check_signal took ")
    assert "over the 20 ms budget (OM_HOOK_BUDGET_MS)" in warning
