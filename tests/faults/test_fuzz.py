"""Scenario 5: 1,000 malformed signals and order updates mixed into valid traffic.

The malformed messages come from deterministic generators (``tests/faults/malformed.py``):
random bytes, truncated or non-UTF-8 JSON, wrong shapes, and near-valid messages with one
field broken — each invalid by the contract, so the test knows the truth without asking the
parser. Every one must end in its queue's ``.dlq`` (counted: DLQ size == malformed count, body
for body) with an ``x-om-error`` reason; every valid signal must be placed and filled, its
events delivered; and the service must still be ready at the end.

A Hypothesis test checks the parsers themselves over arbitrary bytes and JSON values: they
answer with a result or their own "invalid" error, never anything else.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from om_core.messaging.base import ERROR_HEADER, ORIGINAL_QUEUE_HEADER, dlq_name
from om_core.messaging.topology import ORDER_UPDATES_QUEUE, SIGNALS_QUEUE
from om_core.signals.contract import InvalidSignal, parse_signal
from om_core.updates.validate import check_reports
from om_plugins.reports import InvalidReport, decode_reports
from plugins_builtin.bybit.decode import decode_message
from plugins_builtin.bybit.gateway import Gateway
from tests.faults.conftest import World
from tests.faults.malformed import bad_signal, bad_update, deep
from tests.faults.support import audit, await_true, bybit_env, encode, market_signal
from tests.flow.stack import running

SEED = 5150
BAD_SIGNALS = 600
BAD_UPDATES = 400
GOOD_SIGNALS = 30


async def test_malformed_messages_are_dead_lettered_and_valid_traffic_flows(
    world: World, gateway: Gateway
) -> None:
    rng = random.Random(SEED)
    bad_signals = [bad_signal(rng, n) for n in range(BAD_SIGNALS - 2)] + [deep(rng), deep(rng)]
    bad_updates = [bad_update(rng, n) for n in range(BAD_UPDATES - 1)] + [deep(rng)]
    ids = [f"fz-good-{n}" for n in range(GOOD_SIGNALS)]
    traffic = (
        [(SIGNALS_QUEUE, b) for b in bad_signals]
        + [(ORDER_UPDATES_QUEUE, b) for b in bad_updates]
        + [(SIGNALS_QUEUE, encode(market_signal(sid, n))) for n, sid in enumerate(ids)]
    )
    rng.shuffle(traffic)
    env = {**bybit_env(world.fake), "OM_PREFETCH": "32"}
    async with running(world.db_url, world.amqp_url, env=env) as stack:
        for queue, body in traffic:
            await world.bus.publish(queue, body)
        settled = await await_true(lambda: world.db.settled(ids), timeout=90)
        expected = {
            dlq_name(SIGNALS_QUEUE): bad_signals,
            dlq_name(ORDER_UPDATES_QUEUE): bad_updates,
        }
        for dlq, bodies in expected.items():
            size = len(bodies)
            await await_true(lambda q=dlq, n=size: _count_is(world, q, n), timeout=60)
            assert await world.bus.message_count(dlq) == size, dlq
        assert await world.bus.message_count(SIGNALS_QUEUE) == 0
        assert await world.bus.message_count(ORDER_UPDATES_QUEUE) == 0
        assert all((await stack.service.ready()).values())
    assert settled
    for dlq, bodies in expected.items():
        original = dlq.removesuffix(".dlq")
        dead = []
        while (message := await world.bus.get(dlq, timeout=0)) is not None:
            assert message.headers.get(ERROR_HEADER), message.body[:80]
            assert message.headers.get(ORIGINAL_QUEUE_HEADER) == original
            dead.append(message.body)
        assert Counter(dead) == Counter(bodies), dlq  # kept byte for byte, each once
    tally = await audit(world.db, world.fake, world.events, ids)
    assert tally.clean(), tally.report()


async def _count_is(world: World, queue: str, n: int) -> bool:
    return await world.bus.message_count(queue) >= n


_KEYS = st.sampled_from(
    [
        "signal_id",
        "symbol",
        "side",
        "qty",
        "price",
        "topic",
        "data",
        "orderStatus",
        "orderId",
        "orderLinkId",
        "execId",
        "execQty",
        "execPrice",
        "cumExecQty",
        "x",
    ]
)
_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False).map(str)
    | st.text(max_size=12)
)


def _nest(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=8)


# Three levels deep, written out: the gateway's envelope around a stream message is two.
_json = _nest(_leaf | _nest(_leaf | _nest(_leaf)))


@settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(raw=st.binary(max_size=200) | _json.map(lambda v: json.dumps(v).encode()))
def test_parsers_answer_or_refuse_never_crash(raw: bytes) -> None:
    try:
        signal = parse_signal(raw)
    except InvalidSignal:
        pass
    else:
        assert signal.signal_id and signal.symbol
        assert signal.qty is None or (isinstance(signal.qty, Decimal) and signal.qty > 0)
    # The order stream's decoders, Bybit's and the neutral one, and the engine's check of
    # what they give: an answer or their own "invalid", never anything else.
    for decode in (decode_message, decode_reports):
        try:
            check_reports(decode(raw))
        except InvalidReport:
            pass
