"""The console in a real browser against a real ``om run``, on the embedded defaults and on
PostgreSQL + RabbitMQ: sign in, a signal becoming an order, a fill and a position live; halt
and see the next signal rejected; reconcile (dry run, then apply); re-drive a dead letter; a
read key cannot act; phone width and the keyboard. Every step leaves a screenshot under
``artifacts/screenshots/``."""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from om_core.db.models import DeadLetterRecord, Position
from om_core.db.session import create_engine, create_session_factory
from om_core.messaging.topology import SIGNALS_QUEUE
from tests.console.browser import OmRun, Shots, in_thread
from tests.console.conftest import BYBIT_SECRET, READ_KEY, TRADE_ACTOR, TRADE_KEY
from tests.services import services_required

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the test extras bring it; without them these tests cannot run
    if services_required():
        raise
    pytest.skip("Playwright for Python is not installed", allow_module_level=True)

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
LIVE = 10_000  # ms a live change may take to show in these tests (the goal is 250)


def _page(browser: Any, viewport: dict[str, int] = DESKTOP) -> Page:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(LIVE)
    page: Page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


def sign_in(page: Page, om: OmRun, key: str, path: str = "/") -> None:
    page.goto(om.url(path))
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#live-status")).to_have_text("live", timeout=LIVE)


def _send_signal(page: Page, om: OmRun, signal_id: str, **fields: str) -> None:
    page.goto(om.url("/console/operations"))
    page.get_by_label("Signal id").fill(signal_id)
    for label, value in fields.items():
        field = page.get_by_label(label)
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    page.get_by_role("button", name="Preview").click()


def _seed(om: OmRun, *rows: Any) -> list[int]:
    async def add() -> list[int]:
        engine = create_engine(om.database_url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                session.add_all(list(rows))
                await session.flush()
                return [int(row.id) for row in rows]
        finally:
            await engine.dispose()

    return in_thread(add)


def _api(om: OmRun, method: str, path: str, key: str = TRADE_KEY, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, om.url(path), headers={"X-API-Key": key}, timeout=10, **kwargs)


def test_a_signal_becomes_an_order_a_fill_and_a_position_live(
    om: OmRun, browser: Any, shots: Shots
) -> None:
    blotter = _page(browser)
    sign_in(blotter, om, TRADE_KEY)
    shots(blotter, "blotter-signed-in")
    blotter.evaluate("window.__notReloaded = true")

    operations = blotter.context.new_page()
    signal_id = f"e2e-{om.mode}-{uuid.uuid4().hex[:8]}"
    _send_signal(operations, om, signal_id)
    expect(operations.locator("#would-send")).to_contain_text("BTCUSDT")
    expect(operations.locator("#would-send")).to_contain_text("0.001")
    shots(operations, "preview")
    operations.get_by_role("button", name=f"Send signal {signal_id}").click()
    expect(operations.locator(".watch-signal")).to_have_text("placed", timeout=LIVE)
    shots(operations, "sent")

    # The blotter, never reloaded, shows the order, its fill, the position and the signal.
    order = blotter.locator("#orders-body tr", has_text=signal_id)
    expect(order).to_contain_text("filled", timeout=LIVE)
    order_id = order.get_attribute("id")
    assert order_id is not None
    number = order_id.removeprefix("order-")
    expect(blotter.locator("#fills-body tr", has_text=f"#{number}")).to_have_count(1, timeout=LIVE)
    expect(blotter.locator("#positions-body tr[data-symbol=BTCUSDT]")).to_be_visible(timeout=LIVE)
    signal = blotter.locator(f"#signals-body tr[data-signal-id='{signal_id}']")
    expect(signal).to_contain_text("placed", timeout=LIVE)
    assert blotter.evaluate("window.__notReloaded") is True
    shots(blotter, "blotter-live")
    assert blotter.js_errors == []  # type: ignore[attr-defined]


def test_cancel_an_open_order_from_the_blotter(om: OmRun, browser: Any, shots: Shots) -> None:
    page = _page(browser)
    sign_in(page, om, TRADE_KEY)
    signal_id = f"rest-{om.mode}-{uuid.uuid4().hex[:8]}"
    # Far below the price: the limit order rests, open.
    _send_signal(page, om, signal_id, **{"Order type": "limit", "Limit price": "30000"})
    page.get_by_role("button", name=f"Send signal {signal_id}").click()
    expect(page.locator(".watch-signal")).to_have_text("placed", timeout=LIVE)
    page.goto(om.url("/"))
    row = page.locator("#orders-body tr", has_text=signal_id)
    expect(row).to_contain_text("new", timeout=LIVE)
    row.get_by_role("button", name=re.compile("Cancel order")).click()
    shots(page, "cancel-confirm")
    row.get_by_role("button", name="Yes, cancel it").click()
    expect(page.locator("#orders-body tr", has_text=signal_id)).to_contain_text(
        "cancelled", timeout=LIVE
    )
    shots(page, "cancelled")


def test_halt_then_the_next_signal_is_rejected(om: OmRun, browser: Any, shots: Shots) -> None:
    page = _page(browser)
    sign_in(page, om, TRADE_KEY, "/console/operations")
    try:
        page.get_by_role("radio", name=re.compile("halted")).check()
        page.get_by_label(re.compile("^Reason")).fill("e2e: exchange maintenance")
        page.get_by_role("button", name="Review change").click()
        expect(page.get_by_role("alertdialog")).to_contain_text("Set trading to halted?")
        shots(page, "halt-confirm")
        page.get_by_role("button", name="Confirm: set halted").click()
        expect(page.locator("#trading-state-panel")).to_contain_text("Trading is now halted")
        expect(page.locator("#trading-badge")).to_contain_text("halted", timeout=LIVE)

        signal_id = f"halted-{om.mode}-{uuid.uuid4().hex[:8]}"
        _send_signal(page, om, signal_id)
        expect(page.locator("#signal-result")).to_contain_text("TRADING_HALTED")
        shots(page, "preview-rejected")
        page.get_by_role("button", name=re.compile("Send it anyway")).click()
        expect(page.locator(".watch-signal")).to_have_text("rejected", timeout=LIVE)

        page.goto(om.url("/"))
        row = page.locator(f"#signals-body tr[data-signal-id='{signal_id}']")
        expect(row).to_contain_text("rejected")
        expect(row).to_contain_text("TRADING_HALTED")
        expect(row).to_contain_text("engine")  # the engine's invariant, not a plugin's
        shots(page, "blotter-rejected")
    finally:
        body = {"state": "active", "reason": "e2e done"}
        assert _api(om, "PUT", "/api/v1/trading-state", json=body).status_code == 200


def test_reconcile_shows_the_dry_run_then_applies_it(om: OmRun, browser: Any, shots: Shots) -> None:
    # A position the exchange does not have: the books drifted.
    _seed(
        om,
        Position(
            category="linear",
            symbol="SOLUSDT",
            size=Decimal(3),
            avg_entry_price=Decimal(150),
        ),
    )
    page = _page(browser)
    sign_in(page, om, TRADE_KEY, "/console/operations")
    page.get_by_role("button", name="Dry run").click()
    drift = page.locator("#drift-table")
    expect(drift).to_contain_text("SOLUSDT")
    expect(page.locator("#sync-result")).to_contain_text("Dry run")
    shots(page, "dry-run")
    page.get_by_role("button", name="Apply corrections").click()
    expect(page.locator("#sync-result")).to_contain_text("Applied")
    expect(page.locator("#sync-result")).to_contain_text("1 position(s) corrected")
    shots(page, "applied")
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#sync-result")).to_contain_text("nothing to correct")


def test_redrive_a_dead_letter(om: OmRun, browser: Any, shots: Shots) -> None:
    signal_id = f"dl-{om.mode}-{uuid.uuid4().hex[:8]}"
    # A good signal that failed on a problem since fixed (the database was locked).
    [dead_id] = _seed(
        om,
        DeadLetterRecord(
            queue=SIGNALS_QUEUE,
            message_id=signal_id,
            content_type="application/json",
            headers={"x-source": "model-7"},
            body=json.dumps(
                {"signal_id": signal_id, "symbol": "ETHUSDT", "side": "buy", "qty": "0.01"}
            ).encode(),
            reason="delivery limit reached: OperationalError: database is locked",
            state="pending",
        ),
    )
    page = _page(browser)
    sign_in(page, om, TRADE_KEY, "/console/dead-letters")
    row = page.locator(f"#dead-letter-{dead_id}")
    expect(row).to_contain_text("database is locked")
    shots(page, "dead-letters")
    row.get_by_role("button", name=f"Re-drive dead letter {dead_id}").click()
    row.get_by_role("button", name="Yes, re-drive").click()
    done = page.locator(f"#dead-letter-{dead_id}")
    expect(done).to_contain_text("redriven")
    expect(done).to_contain_text(TRADE_ACTOR)
    shots(page, "redriven")

    outcome = _api(om, "GET", f"/api/v1/signals/{signal_id}", READ_KEY)
    for _ in range(100):
        if outcome.status_code == 200 and outcome.json()["status"] == "placed":
            break
        page.wait_for_timeout(100)
        outcome = _api(om, "GET", f"/api/v1/signals/{signal_id}", READ_KEY)
    assert outcome.json()["status"] == "placed", outcome.text

    if om.broker_url.startswith("amqp"):
        # A malformed message from elsewhere shows up live, and can be discarded.
        _publish_raw(om, b'{"signal_id": "broken", "symbol": "BTCUSDT", "side": "up"}')
        fresh = page.locator("#dead-letters-body tr", has_text="side: one of buy, sell")
        expect(fresh).to_have_count(1, timeout=LIVE)
        fresh.get_by_role("button", name=re.compile("^Discard dead letter")).click()
        fresh.get_by_role("button", name="Yes, discard").click()
        expect(page.locator("#dead-letters-body tr", has_text="side: one of buy")).to_contain_text(
            "discarded"
        )
        shots(page, "discarded")


def _publish_raw(om: OmRun, body: bytes) -> None:
    from om_core.messaging.rabbitmq import RabbitBus

    async def publish() -> None:
        bus = RabbitBus(om.broker_url, queues=(SIGNALS_QUEUE,))
        await bus.start()
        try:
            await bus.publish(SIGNALS_QUEUE, body)
        finally:
            await bus.close()

    in_thread(publish)


def test_a_read_key_sees_but_cannot_act(om: OmRun, browser: Any, shots: Shots) -> None:
    page = _page(browser)
    sign_in(page, om, READ_KEY)
    expect(page.locator(".who")).to_contain_text("read")
    expect(page.get_by_role("button", name=re.compile("Cancel order"))).to_have_count(0)
    page.goto(om.url("/console/operations"))
    expect(page.get_by_role("note")).to_contain_text("only a trade key can act")
    for name in ("Preview", "Dry run", "Review change", "Review"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    shots(page, "operations-read-only")
    page.goto(om.url("/console/dead-letters"))
    expect(page.get_by_role("button", name=re.compile("^(Re-drive|Discard)"))).to_have_count(0)

    # Forged requests, with and without the session's CSRF token, are refused.
    statuses = page.evaluate(
        """async () => {
            const token = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"];
            const post = (headers) => fetch("/console/trading-state", {method: "POST", headers,
                body: new URLSearchParams({state: "halted", reason: "read key"})});
            return [(await post({"X-CSRF-Token": token})).status, (await post({})).status];
        }"""
    )
    assert statuses == [403, 403]
    assert _api(om, "GET", "/api/v1/trading-state", READ_KEY).json()["state"] == "active"
    response = _api(
        om, "PUT", "/api/v1/trading-state", READ_KEY, json={"state": "halted", "reason": "x"}
    )
    assert response.status_code == 403

    # Signing out ends the session.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.goto(om.url("/"))
    expect(page).to_have_url(re.compile(r"/console/login"))


def test_charts_and_plugins(om: OmRun, browser: Any, shots: Shots) -> None:
    page = _page(browser)
    sign_in(page, om, READ_KEY, "/console/charts")
    expect(page.locator("figure.chart.has-data").first).to_be_visible(timeout=LIVE)
    expect(page.locator("#chart-outbox_backlog")).to_have_class(
        re.compile("has-data"), timeout=LIVE
    )
    shots(page, "charts")
    page.goto(om.url("/console/plugins"))
    for name in ("paper", "risk", "order_type", "sizing", "bybit"):
        expect(page.locator(f"#plugin-{name}")).to_contain_text("yes")
    expect(page.locator("ol.hooks")).to_contain_text("om_check_signal")
    content = page.content()
    assert BYBIT_SECRET not in content and '"api_secret": "***"' in content
    shots(page, "plugins")


_UNLABELLED = """() => {
    const named = (el) => {
        if (el.type === "hidden") return true;
        if (el.getAttribute("aria-label") || el.getAttribute("aria-labelledby")) return true;
        const labels = el.labels ? [...el.labels] : [];
        if (labels.some(l => l.textContent.trim())) return true;
        return el.tagName === "BUTTON" && el.textContent.trim() !== "";
    };
    return [...document.querySelectorAll("input, select, textarea, button")]
        .filter(el => !named(el)).map(el => el.outerHTML.slice(0, 120));
}"""


def test_phone_width_keyboard_and_labels(om: OmRun, browser: Any, shots: Shots) -> None:
    page = _page(browser, PHONE)
    page.goto(om.url("/"))
    # Signed in with the keyboard alone (the key field may have the focus already).
    for _ in range(5):
        if page.evaluate("document.activeElement.id") == "api-key":
            break
        page.keyboard.press("Tab")
    page.keyboard.type(TRADE_KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#live-status")).to_have_text("live", timeout=LIVE)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for path in (
        "/",
        "/console/operations",
        "/console/dead-letters",
        "/console/charts",
        "/console/plugins",
    ):
        page.goto(om.url(path))
        expect(page.locator("#live-status")).to_have_text("live", timeout=LIVE)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at phone width"
        assert page.evaluate(_UNLABELLED) == [], path
        shots(page, "phone" + path.replace("/", "-"))
    desktop = _page(browser)
    sign_in(desktop, om, TRADE_KEY, "/console/operations")
    desktop.get_by_label("Signal id").fill("labels-check")
    desktop.get_by_role("button", name="Preview").click()
    expect(desktop.locator("#signal-result")).not_to_be_empty()
    assert desktop.evaluate(_UNLABELLED) == []
