"""What an operator does from the console: each action calls the API's own route function
(cancel, trading state, sync, signal submission, dead letters), so the checks, the events
and the audit trail are the API's. Answers are HTML fragments; a refusal keeps its status
code (htmx is told to show error fragments too)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from api.console.auth import ConsoleSession, Trader, read_form
from api.console.render import fragment, macro
from api.errors import ApiError
from api.routes import dead_letters as dead_letter_routes
from api.routes import orders as order_routes
from api.routes import signals as signal_routes
from api.routes import sync as sync_routes
from api.routes import trading_state as state_routes
from api.schemas import TradingStateUpdate
from om_core import trading_state
from om_core.service import Service
from om_core.signals.contract import InvalidSignal, parse_signal
from om_core.tools.preview import preview
from om_plugins.errors import ExchangeUnavailable, OutcomeUnknown

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _error(exc: ApiError) -> HTMLResponse:
    return fragment("message.html", exc.status_code, kind="error", text=exc.message, code=exc.code)


def _problem(status: int, text: str, code: str = "") -> HTMLResponse:
    return fragment("message.html", status, kind="error", text=text, code=code)


# -- cancel ----------------------------------------------------------------------------------


async def _find(service: Service, ref: str) -> Any:
    async with service.sessions() as db:
        return await order_routes.find_order(db, ref.strip())


@router.get("/console/orders/cancel-confirm", response_class=HTMLResponse)
async def cancel_confirm_by_ref(request: Request, _session: Trader, ref: str = "") -> HTMLResponse:
    order = await _find(_service(request), ref)
    if order is None:
        return _problem(404, f"no order {ref[:100]!r}", "order_not_found")
    return fragment("cancel_confirm.html", order=order)


@router.get("/console/orders/{order_id}/cancel", response_class=HTMLResponse)
async def cancel_confirm(request: Request, _session: Trader, order_id: str) -> HTMLResponse:
    order = await _find(_service(request), order_id)
    if order is None:
        return _problem(404, f"no order {order_id[:100]!r}", "order_not_found")
    return fragment("cancel_confirm.html", order=order)


@router.get("/console/orders/{order_id}/keep", response_class=HTMLResponse)
async def cancel_keep(_session: Trader, order_id: int) -> HTMLResponse:
    return HTMLResponse(macro("rows.html", "cancel_button", order_id))


@router.post("/console/orders/{order_id}/cancel", response_class=HTMLResponse)
async def cancel(request: Request, session: Trader, order_id: str) -> HTMLResponse:
    try:
        order = await order_routes.cancel_order(session.principal, _service(request), order_id)
    except ApiError as exc:
        return _error(exc)
    return fragment(
        "message.html",
        202,
        kind="ok",
        text=(
            f"Cancel of order #{order.id} already requested (request "
            f"#{order.cancel_request.id}, {order.cancel_request.state}); not sent again."
            if order.duplicate
            else f"Cancel of order #{order.id} sent (request #{order.cancel_request.id}); "
            "its new status arrives from the exchange."
        ),
        code="",
    )


# -- trading state ---------------------------------------------------------------------------


async def _state_panel(
    request: Request, session: ConsoleSession, status: int = 200, message: str | None = None
) -> HTMLResponse:
    async with _service(request).sessions() as db:
        current = await trading_state.get_state(db)
    return fragment(
        "ops_state_panel.html", status, session=session, trading=current, message=message
    )


def _state_update(form: dict[str, str]) -> TradingStateUpdate:
    return TradingStateUpdate.model_validate(
        {"state": form.get("state", ""), "reason": form.get("reason", "")}
    )


def _invalid(exc: ValidationError) -> HTMLResponse:
    text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return _problem(422, text, "validation_error")


@router.get("/console/trading-state/panel", response_class=HTMLResponse)
async def state_panel(request: Request, session: Trader) -> HTMLResponse:
    return await _state_panel(request, session)


@router.post("/console/trading-state/review", response_class=HTMLResponse)
async def state_review(request: Request, _session: Trader) -> HTMLResponse:
    try:
        update = _state_update(await read_form(request))
    except ValidationError as exc:
        return _invalid(exc)
    async with _service(request).sessions() as db:
        current = await trading_state.get_state(db)
    return fragment(
        "ops_state_review.html", state=update.state.value, reason=update.reason, trading=current
    )


@router.post("/console/trading-state", response_class=HTMLResponse)
async def state_set(request: Request, session: Trader) -> HTMLResponse:
    try:
        update = _state_update(await read_form(request))
    except ValidationError as exc:
        return _invalid(exc)
    try:
        result = await state_routes.put_trading_state(session.principal, _service(request), update)
    except ApiError as exc:
        return _error(exc)
    return await _state_panel(request, session, message=f"Trading is now {result.state.value}.")


# -- reconciliation --------------------------------------------------------------------------


async def _sync(request: Request, session: ConsoleSession, *, dry_run: bool) -> HTMLResponse:
    try:
        report = await sync_routes.sync(session.principal, _service(request), dry_run=dry_run)
    except ApiError as exc:
        return _error(exc)
    except (ExchangeUnavailable, OutcomeUnknown) as exc:
        return _problem(503, f"the exchange could not be reached: {exc}", "exchange_unavailable")
    return fragment("ops_sync.html", report=report)


@router.post("/console/sync/dry-run", response_class=HTMLResponse)
async def sync_dry_run(request: Request, session: Trader) -> HTMLResponse:
    return await _sync(request, session, dry_run=True)


@router.post("/console/sync/apply", response_class=HTMLResponse)
async def sync_apply(request: Request, session: Trader) -> HTMLResponse:
    return await _sync(request, session, dry_run=False)


# -- signals -----------------------------------------------------------------------------------

_FIELDS = ("symbol", "side", "qty", "notional", "price", "order_type")


def _signal_payload(form: dict[str, str]) -> dict[str, Any]:
    """The signal the form describes: only the fields filled in, a new id when none given."""
    payload: dict[str, Any] = {
        "signal_id": form.get("signal_id", "").strip() or f"console-{uuid.uuid4()}",
    }
    for name in _FIELDS:
        value = form.get(name, "").strip()
        if value:
            payload[name] = value
    if form.get("reduce_only") == "true":
        payload["reduce_only"] = True
    payload["strategy_id"] = "console"
    return payload


@router.post("/console/signals/preview", response_class=HTMLResponse)
async def signal_preview(request: Request, _session: Trader) -> HTMLResponse:
    payload = _signal_payload(await read_form(request))
    try:
        parse_signal(payload)
        sendable = True
    except InvalidSignal:
        sendable = False
    try:
        result = await preview(_service(request), payload)
    except (ExchangeUnavailable, OutcomeUnknown) as exc:
        return _problem(503, f"the exchange could not be reached: {exc}", "exchange_unavailable")
    return fragment(
        "ops_preview.html",
        result=result,
        payload=json.dumps(payload, separators=(",", ":")),
        sendable=sendable and not _duplicate(result),
    )


def _duplicate(result: dict[str, Any]) -> bool:
    return any(r.get("code") == "DUPLICATE_SIGNAL" for r in result.get("rejections", []))


@router.get("/console/signals/clear", response_class=HTMLResponse)
async def signal_clear(_session: Trader) -> HTMLResponse:
    return HTMLResponse("")


@router.post("/console/signals/send", response_class=HTMLResponse)
async def signal_send(request: Request, session: Trader) -> HTMLResponse:
    body = (await read_form(request)).get("payload", "").encode("utf-8")
    service = _service(request)
    try:
        submission = await signal_routes.submit(
            service, body, session.principal.actor, source="console"
        )
    except ApiError as exc:
        problems = exc.details.get("problems") if isinstance(exc.details, dict) else None
        text = exc.message + (": " + "; ".join(problems) if problems else "")
        return _problem(exc.status_code, text, exc.code)
    out = await signal_routes.receipt(service, submission)
    return fragment(
        "ops_sent.html",
        202 if not submission.duplicate else 200,
        signal_id=out.signal_id,
        url=out.url,
        status=out.status,
        duplicate=out.duplicate,
    )


# -- dead letters ------------------------------------------------------------------------------

_ACTIONS = ("redrive", "discard")


@router.get("/console/dead-letters/{dead_letter_id}/confirm", response_class=HTMLResponse)
async def dead_letter_confirm(_session: Trader, dead_letter_id: int, action: str) -> HTMLResponse:
    if action not in _ACTIONS:
        return _problem(404, f"no action {action[:20]!r}", "not_found")
    return fragment("dead_letter_confirm.html", dead_letter_id=dead_letter_id, action=action)


@router.get("/console/dead-letters/{dead_letter_id}/buttons", response_class=HTMLResponse)
async def dead_letter_buttons(_session: Trader, dead_letter_id: int) -> HTMLResponse:
    return HTMLResponse(macro("rows.html", "dead_letter_buttons", dead_letter_id))


@router.post("/console/dead-letters/{dead_letter_id}/{action}", response_class=HTMLResponse)
async def dead_letter_act(
    request: Request, session: Trader, dead_letter_id: int, action: str
) -> HTMLResponse:
    if action not in _ACTIONS:
        return _problem(404, f"no action {action[:20]!r}", "not_found")
    try:
        row = await dead_letter_routes.act(
            _service(request), dead_letter_id, action, session.principal.actor
        )
    except ApiError as exc:
        return _error(exc)
    return HTMLResponse(macro("rows.html", "dead_letter_row", row, session.can_trade))
