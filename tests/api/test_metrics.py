"""GET /metrics: Prometheus text, no key, engine counters and gauges read at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from om_core import metrics
from om_core.messaging.base import dlq_name
from om_core.messaging.topology import ORDER_UPDATES_QUEUE, SIGNALS_QUEUE
from tests.api.conftest import Api, signal
from tests.api.test_orders import stored_status
from tests.conftest import wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(api: Api) -> Samples:
    response = await api.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_expose_every_family_and_the_stored_state(api: Api) -> None:
    await api.stack.publish(signal("s-metrics"))
    [order] = await wait_for(lambda: api.stack.orders("s-metrics"))
    await stored_status(api, order.client_order_id, "filled")
    await api.stack.publish(b"not json")
    dlq = dlq_name(SIGNALS_QUEUE)
    await wait_for(lambda: api.stack.service.bus.message_count(dlq), message="dead-lettered")

    before = await scrape(api)
    metrics.count_signal("placed")
    metrics.observe_placement_latency(0.2)
    metrics.count_exchange_request("order/create", 10006, 0.3)
    metrics.count_exchange_request("order/create", 0, 0.05)
    metrics.set_rate_limit_headroom("order/create", 7)
    after = await scrape(api)

    names = {name for name, _ in after}
    for expected in (
        "om_signals_total",
        "om_orders",
        "om_order_placement_latency_seconds_bucket",
        "om_exchange_request_duration_seconds_bucket",
        "om_exchange_requests_total",
        "om_exchange_errors_total",
        "om_exchange_rate_limit_headroom",
        "om_outbox_backlog",
        "om_outbox_oldest_unsent_age_seconds",
        "om_dlq_messages",
        "om_consumer_lag_messages",
        "om_metrics_source_up",
    ):
        assert expected in names, expected

    assert value(after, "om_orders", status="filled") == 1
    assert value(after, "om_orders", status="new") == 0
    assert value(after, "om_dlq_messages", queue=dlq) == 1
    assert value(after, "om_consumer_lag_messages", queue=SIGNALS_QUEUE) == 0
    assert ("om_consumer_lag_messages", (("queue", ORDER_UPDATES_QUEUE),)) in after
    assert value(after, "om_metrics_source_up", source="database") == 1
    assert value(after, "om_metrics_source_up", source="broker") == 1

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("om_signals_total", outcome="placed") == 1
    assert delta("om_order_placement_latency_seconds_count") == 1
    assert delta("om_exchange_errors_total", endpoint="order/create", code="10006") == 1
    assert delta("om_exchange_errors_total", endpoint="order/create", code="0") == 0
    assert delta("om_exchange_requests_total", endpoint="order/create", code="0") == 1
    assert delta("om_exchange_request_duration_seconds_count", endpoint="order/create") == 2
    assert value(after, "om_exchange_rate_limit_headroom", group="order/create") == 7
