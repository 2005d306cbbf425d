"""The console over HTTP, without a browser: sign-in, the session cookie, CSRF, scopes, the
no-keys mode, and the live stream fed from the service's own events."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.console.auth import ConsoleSession
from api.security import ANONYMOUS
from tests.api.conftest import READ_KEY, TRADE_KEY, Api, api_for, signal

HTML = {"Accept": "text/html"}


@pytest.fixture
async def console(sqlite_url: str) -> AsyncIterator[Api]:
    async with api_for(sqlite_url) as api:
        yield api


@pytest.fixture
async def open_console(tmp_path: Path) -> AsyncIterator[Api]:
    """No API keys configured: no sign-in."""
    async with api_for(
        f"sqlite+aiosqlite:///{tmp_path / 'open.db'}", env={"OM_API_KEYS": ""}
    ) as api:
        yield api


def _csrf(page: str) -> str:
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def _sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/console/login", headers=HTML)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    return await client.post(
        "/console/login", data={"api_key": key, "csrf_token": token.group(1), "next": "/"}
    )


async def test_pages_need_a_session_and_a_key_gets_one(console: Api) -> None:
    client = console.client
    response = await client.get("/", headers=HTML)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2F"
    htmx = await client.get("/console/fragments/orders", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/console/login")

    refused = await _sign_in(client, "not-a-key")
    assert refused.status_code == 401 and "not valid" in refused.text
    signed = await _sign_in(client, TRADE_KEY)
    assert signed.status_code == 303 and signed.headers["location"] == "/"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("om_session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert TRADE_KEY not in cookie

    page = await client.get("/", headers=HTML)
    assert page.status_code == 200 and "Blotter" in page.text
    assert TRADE_KEY not in page.text

    out = await client.post("/console/logout", data={"csrf_token": _csrf(page.text)})
    assert out.status_code == 303
    assert (await client.get("/", headers=HTML)).status_code == 303


async def test_a_sign_in_form_from_elsewhere_is_refused(console: Api) -> None:
    response = await console.client.post(
        "/console/login", data={"api_key": TRADE_KEY, "csrf_token": "forged", "next": "/"}
    )
    assert response.status_code == 403 and "om_session" not in response.headers.get(
        "set-cookie", ""
    )


async def test_state_changes_need_the_csrf_token_and_the_same_origin(console: Api) -> None:
    client = console.client
    await _sign_in(client, TRADE_KEY)
    token = _csrf((await client.get("/", headers=HTML)).text)
    form = {"state": "halted", "reason": "csrf test"}
    assert (await client.post("/console/trading-state", data=form)).status_code == 403
    wrong = await client.post("/console/trading-state", data=form, headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    elsewhere = await client.post(
        "/console/trading-state",
        data=form,
        headers={"X-CSRF-Token": token, "Origin": "https://evil.example"},
    )
    assert elsewhere.status_code == 403
    assert (await console.get("/api/v1/trading-state")).json()["state"] == "active"

    done = await client.post("/console/trading-state", data=form, headers={"X-CSRF-Token": token})
    assert done.status_code == 200 and "Trading is now halted" in done.text
    state = (await console.get("/api/v1/trading-state")).json()
    assert state["state"] == "halted" and state["reason"] == "csrf test"


async def test_a_read_key_is_refused_every_action(console: Api) -> None:
    client = console.client
    await _sign_in(client, READ_KEY)
    page = (await client.get("/console/operations", headers=HTML)).text
    assert 'id="preview-button"' not in page and "only a trade key can act" in page
    headers = {"X-CSRF-Token": _csrf(page)}
    for path, form in (
        ("/console/trading-state", {"state": "halted", "reason": "x"}),
        ("/console/sync/apply", {}),
        ("/console/signals/send", {"payload": json.dumps(signal("read-1"))}),
        ("/console/orders/1/cancel", {}),
        ("/console/dead-letters/1/discard", {}),
    ):
        response = await client.post(path, data=form, headers=headers)
        assert response.status_code == 403, path
    assert await console.stack.signal_row("read-1") is None


async def test_without_keys_there_is_no_sign_in_but_still_csrf(open_console: Api) -> None:
    client = open_console.client
    page = await client.get("/", headers=HTML)
    assert page.status_code == 200 and "Sign out" not in page.text
    assert (await client.get("/console/login", headers=HTML)).status_code == 303
    refused = await client.post("/console/sync/dry-run")
    assert refused.status_code == 403
    dry = await client.post("/console/sync/dry-run", headers={"X-CSRF-Token": _csrf(page.text)})
    assert dry.status_code == 200 and "Dry run" in dry.text


async def test_the_signal_form_previews_then_sends_through_the_queue(open_console: Api) -> None:
    client = open_console.client
    headers = {"X-CSRF-Token": _csrf((await client.get("/", headers=HTML)).text)}
    form = {"symbol": "ethusdt", "side": "sell", "qty": "0.05", "signal_id": "form-1"}
    preview = await client.post("/console/signals/preview", data=form, headers=headers)
    assert preview.status_code == 200 and 'id="would-send"' in preview.text
    payload = re.search(r'name="payload" value="([^"]+)"', preview.text)
    assert payload
    sent = await client.post(
        "/console/signals/send",
        data={"payload": payload.group(1).replace("&#34;", '"')},
        headers=headers,
    )
    assert sent.status_code == 202, sent.text
    row = await open_console.stack.outcome("form-1")
    assert (row.status, row.symbol, row.side) == ("placed", "ETHUSDT", "sell")
    again = await client.post(
        "/console/signals/send",
        data={"payload": payload.group(1).replace("&#34;", '"')},
        headers=headers,
    )
    assert again.status_code == 200 and "Already known" in again.text
    assert len(await open_console.stack.orders("form-1")) == 1


async def test_the_live_stream_carries_rendered_rows_of_the_services_events(
    open_console: Api,
) -> None:
    app = open_console.app
    broadcaster = app.state.console_live
    client = broadcaster.connect(ConsoleSession(ANONYMOUS, "t", signed_in=False))
    assert client is not None
    await open_console.stack.publish(signal("live-1", price="30000"))
    seen: dict[str, str] = {}

    async def until_order() -> None:
        while "order" not in seen:
            message = await client.queue.get()
            assert message is not None
            kind = message.split("\n", 1)[0].removeprefix("event: ")
            seen.setdefault(kind, message)

    await asyncio.wait_for(until_order(), 10)
    data = json.loads(seen["order"].split("data: ", 1)[1])
    assert data["symbol"] == "BTCUSDT" and data["occurred_at"]
    assert 'id="order-' in data["html"] and "live-1" in data["html"]
    assert "Cancel order" in data["html"]  # the anonymous (no keys) viewer may trade
    broadcaster.disconnect(client)


async def test_the_app_serves_its_assets_and_the_json_routes(console: Api) -> None:
    client = console.client
    for path in ("/console/static/vendor/htmx.min.js", "/console/static/vendor/uPlot.iife.min.js"):
        assert (await client.get(path)).status_code == 200
    charts = await console.get("/api/v1/charts")
    assert charts.status_code == 200 and "signals" in charts.json()["charts"]
    plugins = (await console.get("/api/v1/plugins")).json()
    enabled = [p["name"] for p in plugins["plugins"] if p["enabled"]]
    assert enabled == ["paper", "risk", "order_type", "sizing", "bybit"]
