"""The console's pages and the table fragments htmx swaps into them (filters, "load more").

Every page reads through the JSON API's own route functions, so what the console shows is
what ``/api/v1`` answers: same filters, same pagination, same positions with unrealized PnL.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlmodel import col, select

from api.console.auth import ConsoleSession, Viewer
from api.console.render import fragment, page
from api.errors import ApiError
from api.routes import dead_letters as dead_letter_routes
from api.routes import orders as order_routes
from api.routes import positions as position_routes
from api.routes import signals as signal_routes
from api.routes.dead_letters import QueueName
from api.routes.plugins import plugin_list
from om_core import trading_state
from om_core.db.models import Fill, SignalRecord
from om_core.dead_letters import DeadLetterState
from om_core.messaging.base import dlq_name
from om_core.messaging.topology import CONSUMED_QUEUES
from om_core.orders.status import OrderStatus
from om_core.sampler import CHARTS
from om_core.service import Service
from om_plugins.types import Side

__all__ = ["router", "signal_view"]

router = APIRouter(include_in_schema=False)

#: Rows on a page of the blotter's tables.
PAGE_SIZE = 50


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _trading(service: Service) -> trading_state.TradingStatus:
    async with service.sessions() as session:
        return await trading_state.get_state(session)


async def _base(
    request: Request, session: ConsoleSession, active: str, title: str
) -> dict[str, Any]:
    return {
        "session": session,
        "active": active,
        "title": title,
        "trading": await _trading(_service(request)),
    }


def signal_view(item: Any) -> dict[str, Any]:
    """A signal (API item or stored row) as the signal row macro shows it."""
    get = (
        item.get
        if isinstance(item, dict)
        else lambda name, default=None: getattr(item, name, default)
    )
    # A stored row's reasons are served defensively, like the API's (api.stored).
    reasons: list[Any] = (
        order_routes.reasons_out(item) if isinstance(item, SignalRecord) else get("reasons") or []
    )
    return {
        "key": _dom_key(str(get("signal_id"))),
        "signal_id": get("signal_id"),
        "status": get("status"),
        "symbol": get("symbol"),
        "side": get("side"),
        "received_at": get("received_at"),
        "reasons": [r if isinstance(r, dict) else r.model_dump() for r in reasons],
    }


def _dom_key(signal_id: str) -> str:
    """A signal id made safe for an element id (ids may hold any character)."""
    return signal_id.encode("utf-8").hex()


def _order_filters(symbol: str, status: str, side: str) -> dict[str, Any]:
    """The blotter's filters as the orders route takes them; a bad value is simply ignored."""
    filters: dict[str, Any] = {"symbol": None, "status": None, "side": None}
    if symbol.strip():
        filters["symbol"] = symbol.strip()[:64].upper()
    if status in {s.value for s in OrderStatus}:
        filters["status"] = [OrderStatus(status)]
    if side in {s.value for s in Side}:
        filters["side"] = Side(side)
    return filters


async def _orders(
    service: Service,
    session: ConsoleSession,
    symbol: str,
    status: str,
    side: str,
    cursor: str | None,
) -> dict[str, Any]:
    filters = _order_filters(symbol, status, side)
    async with service.sessions() as db:
        result = await order_routes.list_orders(
            session.principal,
            db,
            symbol=filters["symbol"],
            status=filters["status"],
            side=filters["side"],
            signal_id=None,
            category=None,
            created_from=None,
            created_to=None,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
    more = urlencode(
        {"symbol": symbol, "status": status, "side": side, "cursor": result.next_cursor or ""}
    )
    return {
        "orders": result.items,
        "next_cursor": result.next_cursor,
        "more_query": more,
        "cursor": cursor,
        "filtered": any(filters.values()),
    }


async def _positions(service: Service, session: ConsoleSession) -> list[Any]:
    async with service.sessions() as db:
        listed = await position_routes.list_positions(
            session.principal, db, service, include_closed=False
        )
    return list(listed.items)


async def _fills(service: Service) -> list[dict[str, Any]]:
    async with service.sessions() as db:
        rows = (
            await db.exec(
                select(Fill).order_by(col(Fill.executed_at).desc(), col(Fill.id).desc()).limit(20)
            )
        ).all()
    return [
        {
            "at": f.executed_at,
            "order_id": f.order_id,
            "symbol": f.symbol,
            "side": f.side,
            "qty": f.qty,
            "price": f.price,
            "fee": f.fee,
        }
        for f in rows
    ]


async def _signals(service: Service, session: ConsoleSession) -> list[dict[str, Any]]:
    async with service.sessions() as db:
        listed = await signal_routes.list_signals(
            session.principal,
            db,
            status=None,
            symbol=None,
            side=None,
            received_from=None,
            received_to=None,
            cursor=None,
            limit=PAGE_SIZE,
        )
    return [signal_view(item) for item in listed.items]


@router.get("/", response_class=HTMLResponse)
async def blotter(
    request: Request, session: Viewer, symbol: str = "", status: str = "", side: str = ""
) -> HTMLResponse:
    service = _service(request)
    context = await _base(request, session, "blotter", "Blotter")
    context.update(await _orders(service, session, symbol, status, side, None))
    context.update(
        filters={"symbol": symbol, "status": status, "side": side},
        statuses=[s.value for s in OrderStatus],
        positions=await _positions(service, session),
        fills=await _fills(service),
        signals=await _signals(service, session),
    )
    return page("blotter.html", **context)


@router.get("/console/fragments/orders", response_class=HTMLResponse)
async def orders_fragment(
    request: Request,
    session: Viewer,
    symbol: str = "",
    status: str = "",
    side: str = "",
    cursor: str = "",
) -> HTMLResponse:
    try:
        context = await _orders(_service(request), session, symbol, status, side, cursor or None)
    except ApiError as exc:
        return fragment("message.html", 400, kind="error", text=exc.message, code=exc.code)
    return fragment("orders_rows.html", session=session, **context)


@router.get("/console/fragments/positions", response_class=HTMLResponse)
async def positions_fragment(request: Request, session: Viewer) -> HTMLResponse:
    positions = await _positions(_service(request), session)
    return fragment("positions_rows.html", positions=positions)


@router.get("/console/fragments/signals", response_class=HTMLResponse)
async def signals_fragment(request: Request, session: Viewer) -> HTMLResponse:
    signals = await _signals(_service(request), session)
    return fragment("signals_rows.html", signals=signals)


@router.get("/console/charts", response_class=HTMLResponse)
async def charts_page(request: Request, session: Viewer) -> HTMLResponse:
    context = await _base(request, session, "charts", "Charts")
    interval = _service(request).sampler.interval
    return page("charts.html", charts=CHARTS, interval=interval, **context)


@router.get("/console/charts.json")
async def charts_data(request: Request, _session: Viewer) -> JSONResponse:
    return JSONResponse(_service(request).sampler.series())


@router.get("/console/plugins", response_class=HTMLResponse)
async def plugins_page(request: Request, session: Viewer) -> HTMLResponse:
    context = await _base(request, session, "plugins", "Plugins")
    return page("plugins.html", plugins=plugin_list(_service(request)), **context)


@router.get("/console/operations", response_class=HTMLResponse)
async def operations_page(request: Request, session: Viewer) -> HTMLResponse:
    context = await _base(request, session, "operations", "Operations")
    # Suggestions only: any symbol the exchange lists can be typed.
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    return page("operations.html", symbols=symbols, message=None, **context)


async def _dead_letters(
    service: Service, session: ConsoleSession, state: str, queue: str, cursor: str | None
) -> dict[str, Any]:
    states = [DeadLetterState(state)] if state in {s.value for s in DeadLetterState} else None
    chosen = cast(QueueName | None, queue if queue in CONSUMED_QUEUES else None)
    async with service.sessions() as db:
        listed = await dead_letter_routes.list_dead_letters(
            session.principal,
            db,
            state=states,
            queue=chosen,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
    more = urlencode({"state": state, "queue": queue, "cursor": listed.next_cursor or ""})
    return {
        "dead_letters": listed.items,
        "next_cursor": listed.next_cursor,
        "more_query": more,
        "cursor": cursor,
    }


@router.get("/console/dead-letters", response_class=HTMLResponse)
async def dead_letters_page(
    request: Request, session: Viewer, state: str = "pending", queue: str = ""
) -> HTMLResponse:
    service = _service(request)
    context = await _base(request, session, "dead-letters", "Dead letters")
    depths: dict[str, int | str] = {}
    for name in CONSUMED_QUEUES:
        try:
            depths[dlq_name(name)] = await service.bus.message_count(dlq_name(name))
        except Exception:
            depths[dlq_name(name)] = "unknown"
    context.update(await _dead_letters(service, session, state, queue, None))
    context.update(
        filters={"state": state, "queue": queue}, queues=list(CONSUMED_QUEUES), depths=depths
    )
    return page("dead_letters.html", **context)


@router.get("/console/fragments/dead-letters", response_class=HTMLResponse)
async def dead_letters_fragment(
    request: Request, session: Viewer, state: str = "", queue: str = "", cursor: str = ""
) -> HTMLResponse:
    try:
        context = await _dead_letters(_service(request), session, state, queue, cursor or None)
    except ApiError as exc:
        return fragment("message.html", 400, kind="error", text=exc.message, code=exc.code)
    return fragment("dead_letters_rows.html", session=session, **context)
