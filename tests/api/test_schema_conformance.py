"""Schemathesis fuzzes the API from its own OpenAPI schema, over real HTTP.

Every operation gets generated valid requests and invalid ones (wrong types, out-of-range
numbers, odd strings), sent with a trade key to the app served by uvicorn on a loopback port.
No answer may be a server error, and every answer's status code, content type and body must
be among those the schema declares. Examples are derandomized, so a CI run is repeatable.

The stateful run chains calls along the schema's OpenAPI links (api/links.py): a submitted
signal is read back, a listed order read and cancelled, a dead letter redriven, with the same
checks on every step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from om_core.db.models import Position, PositionSnapshot
from tests.api.conftest import TRADE_KEY, Api, order_row, signal
from tests.conftest import wait_for

EXAMPLES = {GenerationMode.POSITIVE: 100, GenerationMode.NEGATIVE: 50}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # pytest owns the process's signals.
        yield


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or task.done(), message="uvicorn started")
        assert not task.done(), "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def fuzz(schema: schemathesis.BaseSchema, base_url: str) -> list[str]:
    """Run every operation's examples; returns the failures (blocking: run it in a thread)."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, count in EXAMPLES.items():
            has_input = operation.path_parameters or operation.query or operation.body
            if mode is GenerationMode.NEGATIVE and not has_input:
                continue  # nothing to make invalid

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=count,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                response = case.call(
                    base_url=base_url, headers={"X-API-Key": TRADE_KEY}, timeout=30
                )
                case.validate_response(response, checks=CHECKS)

            try:
                check()
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


def fuzz_stateful(schema: schemathesis.BaseSchema, base_url: str) -> set[tuple[str, int]]:
    """Run scenarios that follow the links; returns every (operation, status) answered
    (blocking: run it in a thread). A failed check raises."""
    answered: set[tuple[str, int]] = set()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": base_url, "headers": {"X-API-Key": TRADE_KEY}, "timeout": 30}

        def validate_response(
            self, response: Any, case: schemathesis.Case, *_: Any, **__: Any
        ) -> None:
            answered.add((case.operation.label, response.status_code))
            case.validate_response(response, checks=CHECKS)

    Machine.run(
        settings=settings(
            max_examples=40,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    return answered


async def _data(api: Api) -> None:
    """Data to find, so that 200 answers carry items to check against the schema."""
    now = datetime.now(UTC)
    await api.stack.publish(signal("s-1", price="30000"))
    await api.stack.outcome("s-1")
    btc = Position(
        category="linear",
        symbol="BTCUSDT",
        size=Decimal("0.5"),
        avg_entry_price=Decimal("50000"),
        mark_price=None,
    )
    await api.add([btc, *(order_row(now - timedelta(minutes=n)) for n in range(5))])
    assert btc.id is not None
    await api.add(
        PositionSnapshot(
            position_id=btc.id,
            category="linear",
            symbol="BTCUSDT",
            size=Decimal("0.5"),
            avg_entry_price=Decimal("50000"),
            realized_pnl=Decimal(0),
            fees_paid=Decimal(0),
            reason="fill",
            created_at=now - timedelta(minutes=n),
        )
        for n in range(3)
    )


async def test_every_operation_honours_the_schema_and_never_fails_on_input(api: Api) -> None:
    await _data(api)
    schema = schemathesis.openapi.from_dict(api.app.openapi())
    async with served(api.app) as base_url:
        failures = await asyncio.to_thread(fuzz, schema, base_url)
    assert not failures, "\n\n".join(failures)


async def test_stateful_scenarios_along_the_links_honour_the_schema(api: Api) -> None:
    await _data(api)
    schema = schemathesis.openapi.from_dict(api.app.openapi())
    async with served(api.app) as base_url:
        answered = await asyncio.to_thread(fuzz_stateful, schema, base_url)
    # Links were followed: ids no generator guesses were found.
    assert ("GET /api/v1/signals/{signal_id}", 200) in answered, sorted(answered)
    assert ("GET /api/v1/orders/{order_ref}", 200) in answered, sorted(answered)
    assert ("GET /api/v1/positions/{symbol}/snapshots", 200) in answered, sorted(answered)
