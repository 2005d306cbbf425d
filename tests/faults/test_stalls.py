"""Issue 14, observations 1 and 4 (the bus side): nothing stalls the consumers.

On PostgreSQL + RabbitMQ:

* four order updates whose ``createdTime`` no clock can hold go to the DLQ with their reason
  at once, and the fills after them are applied — also after a restart;
* a message whose processing fails for a reason that is not transient (``OSError`` EOVERFLOW
  as converting a timestamp raised it, a database ``DataError``) is dead-lettered at its first
  delivery, and the valid messages that shared its batch are processed;
* a transient failure is retried while the message is held, and the message succeeds when it
  goes away; one that outlasts ``OM_RETRY_SECONDS`` dead-letters the message with its reason;
* meanwhile ``/metrics`` shows the message unacknowledged and in retry, and ``/ready`` goes
  not ready once it is held longer than ``OM_READY_MAX_UNACKED_SECONDS``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from om_core import failures, metrics
from om_core.messaging.base import ERROR_HEADER, DeadLetter, Message, dlq_name
from om_core.messaging.topology import ORDER_UPDATES_QUEUE, SIGNALS_QUEUE
from om_core.updates.apply import UpdateApplier
from om_plugins import OrderReport, Report
from tests.conftest import wait_for
from tests.faults.conftest import World
from tests.faults.support import bybit_env
from tests.flow import bybit_messages
from tests.flow.reports import message, order
from tests.flow.stack import Stack, running
from tests.flow.test_reverse_flow import resting_order

UPDATES_DLQ = dlq_name(ORDER_UPDATES_QUEUE)
SIGNALS_DLQ = dlq_name(SIGNALS_QUEUE)
#: What converting ``createdTime: "99999999999999999999"`` raised (errno 75).
EOVERFLOW = OSError(errno.EOVERFLOW, "Value too large for defined data type")


async def dead_letters(stack: Stack, queue: str, n: int, *, timeout: float = 20) -> list[Message]:
    """Await ``n`` messages in ``queue`` and take them."""
    bus = stack.service.bus
    await wait_for(
        lambda: _at_least(bus.message_count(queue), n), timeout=timeout, message=f"{n} in {queue}"
    )
    taken = []
    while (m := await bus.get(queue, timeout=0)) is not None:
        taken.append(m)
    assert len(taken) == n, [m.body[:80] for m in taken]
    return taken


async def _at_least(count: Awaitable[int], n: int) -> bool:
    return await count >= n


def filled(cid: str, oid: str) -> bytes:
    return message(order(cid=cid, oid=oid, status="filled", filled="0.010", value="500"))


# -- observation 1, as it was seen: Bybit's createdTime ---------------------------------------


def bybit_update(cid: str, oid: str, **fields: Any) -> bytes:
    item = bybit_messages.order_object(
        link_id=cid,
        order_id=oid,
        status="Filled",
        qty="0.001",
        cum_qty="0.001",
        cum_value="50",
        order_type="Market",
    )
    return json.dumps(bybit_messages.stream({**item, **fields})).encode()


INSANE_CREATED_TIMES: list[Any] = [
    "99999999999999999999",
    99999999999999999999,
    "-1",
    "²",
]


async def placed(stack: Stack, signal_id: str) -> tuple[str, str]:
    await stack.publish(
        {"signal_id": signal_id, "symbol": "BTCUSDT", "side": "buy", "qty": "0.001"}
    )
    assert (await stack.outcome(signal_id, timeout=30)).status == "placed"
    [row] = await stack.orders(signal_id)
    assert row.exchange_order_id
    return row.client_order_id, row.exchange_order_id


async def test_four_unreadable_created_times_stop_no_fill_even_across_a_restart(
    world: World,
) -> None:
    env = {**bybit_env(world.fake), "OM_SYNC_INTERVAL": "0"}
    async with running(world.db_url, world.amqp_url, env=env) as stack:
        cid, oid = await placed(stack, "stall-1")
        for created in INSANE_CREATED_TIMES:
            await world.bus.publish(
                ORDER_UPDATES_QUEUE, bybit_update(cid, oid, createdTime=created)
            )
        await world.bus.publish(ORDER_UPDATES_QUEUE, bybit_update(cid, oid))
        await stack.order_status(cid, "filled", timeout=20)
        await wait_for(
            lambda: _at_least(world.bus.message_count(UPDATES_DLQ), 4),
            timeout=20,
            message="the four in the DLQ",
        )
    # After a restart nothing comes back, and fills still flow.
    async with running(world.db_url, world.amqp_url, env=env) as stack:
        cid2, oid2 = await placed(stack, "stall-2")
        await world.bus.publish(ORDER_UPDATES_QUEUE, bybit_update(cid2, oid2))
        await stack.order_status(cid2, "filled", timeout=20)
        assert await world.bus.message_count(ORDER_UPDATES_QUEUE) == 0
        dead = await dead_letters(stack, UPDATES_DLQ, 4)
    for m in dead:
        assert "createdTime" in m.headers[ERROR_HEADER], m.headers[ERROR_HEADER]


# -- failures that are not transient: dead-lettered at once, the batch's others applied -------


class Fault:
    """Makes an applier raise ``error`` on the reports ``poisoned`` picks, alone or in a
    batch, while ``active``; ``calls`` counts the failed calls (their batch sizes)."""

    def __init__(
        self, applier: UpdateApplier, poisoned: Callable[[Report], bool], error: BaseException
    ) -> None:
        self.active = True
        self.calls: list[int] = []
        apply, apply_many = applier.apply, applier.apply_many

        async def one(report: Any) -> Any:
            if self.active and poisoned(report):
                self.calls.append(1)
                raise error
            return await apply(report)

        async def many(reports: Sequence[Any]) -> Any:
            if self.active and any(poisoned(r) for r in reports):
                self.calls.append(len(reports))
                raise error
            return await apply_many(reports)

        applier.apply = one  # type: ignore[method-assign]
        applier.apply_many = many  # type: ignore[method-assign]


def is_poison(report: Report) -> bool:
    return isinstance(report, OrderReport) and report.exchange_order_id == "poison"


async def test_a_poison_update_in_a_batch_costs_only_its_own_message(
    server_urls: tuple[str, str],
) -> None:
    async with running(*server_urls) as stack:
        a = await resting_order(stack, "iso-a")
        b = await resting_order(stack, "iso-b")
        fault = Fault(stack.service.applier, is_poison, EOVERFLOW)
        poison = message(order(cid="", oid="poison", status="new"))
        batch = [
            Message(filled(a.client_order_id, a.exchange_order_id or "")),
            Message(poison),
            Message(filled(b.client_order_id, b.exchange_order_id or "")),
        ]
        outcomes = await asyncio.wait_for(
            stack.service.event_subscriber.handle_batch(batch), timeout=10
        )
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], DeadLetter)
        assert "Value too large" in outcomes[1].reason
        await stack.order_status(a.client_order_id, "filled")
        await stack.order_status(b.client_order_id, "filled")
        assert fault.calls == [3, 1]  # the batch of three reports, then the poison alone

        # Through the bus: dead-lettered at its first delivery, with the reason.
        started = time.monotonic()
        await stack.service.bus.publish(ORDER_UPDATES_QUEUE, poison)
        [dead] = await dead_letters(stack, UPDATES_DLQ, 1)
        assert time.monotonic() - started < 10
        assert "OSError" in dead.headers[ERROR_HEADER]
        assert fault.calls == [3, 1, 1]  # one try, no retry, no redelivery


async def test_a_database_data_error_is_not_retried(server_urls: tuple[str, str]) -> None:
    async with running(*server_urls) as stack:
        data_error: DBAPIError | None = None
        async with stack.service.sessions() as session:
            try:
                await (await session.connection()).execute(text("SELECT 1e400::float8"))
            except DBAPIError as exc:
                data_error = exc
        assert data_error is not None and failures.sqlstate(data_error) == "22003"
        assert not failures.is_transient(data_error)
        a = await resting_order(stack, "data-a")
        fault = Fault(stack.service.applier, is_poison, data_error)
        await stack.service.bus.publish(
            ORDER_UPDATES_QUEUE, message(order(cid="", oid="poison", status="new"))
        )
        await stack.service.bus.publish(
            ORDER_UPDATES_QUEUE, filled(a.client_order_id, a.exchange_order_id or "")
        )
        await stack.order_status(a.client_order_id, "filled")
        [dead] = await dead_letters(stack, UPDATES_DLQ, 1)
        assert "[22003]" in dead.headers[ERROR_HEADER]
        assert fault.calls == [1]  # one try, no retry, no redelivery


async def test_a_poison_signal_is_dead_lettered_at_once_and_the_next_placed(
    server_urls: tuple[str, str],
) -> None:
    async with running(*server_urls) as stack:
        processor = stack.service.processor
        process_many = processor.process_many
        tries: list[str] = []

        async def poisoned(batch: Sequence[Any]) -> Any:
            if any(i.signal.signal_id == "sig-poison" for i in batch):
                tries.append("x")
                raise OverflowError("timestamp out of range for platform time_t")
            return await process_many(batch)

        processor.process_many = poisoned  # type: ignore[method-assign]
        await stack.publish({"signal_id": "sig-poison", "symbol": "BTCUSDT", "side": "buy"})
        await stack.publish(
            {"signal_id": "sig-good", "symbol": "BTCUSDT", "side": "buy", "qty": "0.001"}
        )
        assert (await stack.outcome("sig-good")).status == "placed"
        [dead] = await dead_letters(stack, SIGNALS_DLQ, 1)
        assert json.loads(dead.body)["signal_id"] == "sig-poison"
        assert "OverflowError" in dead.headers[ERROR_HEADER]
        assert tries == ["x"]


# -- transient failures: retried while held, bounded in time ----------------------------------


def scrape() -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[sample.name, sample.labels.get("queue", "")] = sample.value
    return out


async def test_a_transient_failure_is_retried_until_it_goes_away_and_shows_meanwhile(
    server_urls: tuple[str, str],
) -> None:
    env = {"OM_RETRY_SECONDS": "30", "OM_READY_MAX_UNACKED_SECONDS": "1"}
    async with running(*server_urls, env=env) as stack:
        a = await resting_order(stack, "tr-a")
        outage = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        fault = Fault(stack.service.applier, lambda r: True, outage)
        gauges = metrics.StateGauges(stack.service.sessions, stack.service.bus, min_interval=0)
        await stack.service.bus.publish(
            ORDER_UPDATES_QUEUE, filled(a.client_order_id, a.exchange_order_id or "")
        )
        await wait_for(lambda: len(fault.calls) >= 2, message="retries")

        async def stuck_and_shown() -> bool:
            await gauges.refresh()
            seen = scrape()
            held = seen["om_consumer_oldest_unacked_age_seconds", ORDER_UPDATES_QUEUE]
            return (
                seen["om_consumer_messages_in_retry", ORDER_UPDATES_QUEUE] == 1
                and seen["om_consumer_unacked_messages", ORDER_UPDATES_QUEUE] == 1
                and held > 1
                and not (await stack.service.ready())["consumers_flowing"]
            )

        await wait_for(stuck_and_shown, timeout=10, message="the stuck message on /metrics")
        assert await stack.service.bus.message_count(UPDATES_DLQ) == 0

        # The outage ends: the same delivery succeeds.
        fault.active = False
        await stack.order_status(a.client_order_id, "filled", timeout=15)

        async def flowing() -> bool:
            await gauges.refresh()
            seen = scrape()
            return (
                seen["om_consumer_messages_in_retry", ORDER_UPDATES_QUEUE] == 0
                and seen["om_consumer_oldest_unacked_age_seconds", ORDER_UPDATES_QUEUE] == 0
                and all((await stack.service.ready()).values())
            )

        await wait_for(flowing, timeout=10, message="ready again")
        assert await stack.service.bus.message_count(UPDATES_DLQ) == 0


async def test_a_transient_failure_past_the_bound_dead_letters_the_message(
    server_urls: tuple[str, str],
) -> None:
    async with running(*server_urls, env={"OM_RETRY_SECONDS": "1"}) as stack:
        a = await resting_order(stack, "bound-a")
        b = await resting_order(stack, "bound-b")
        lost = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        Fault(stack.service.applier, lambda r: r.client_order_id == a.client_order_id, lost)
        started = time.monotonic()
        await stack.service.bus.publish(
            ORDER_UPDATES_QUEUE, filled(a.client_order_id, a.exchange_order_id or "")
        )
        await stack.service.bus.publish(
            ORDER_UPDATES_QUEUE, filled(b.client_order_id, b.exchange_order_id or "")
        )
        await stack.order_status(b.client_order_id, "filled")
        [dead] = await dead_letters(stack, UPDATES_DLQ, 1)
        assert time.monotonic() - started < 15
        reason = dead.headers[ERROR_HEADER]
        assert "outlasted the retry bound" in reason and "Connection refused" in reason, reason
        assert (await stack.order_status(a.client_order_id, "new")).status == "new"
