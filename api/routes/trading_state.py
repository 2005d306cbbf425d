"""The trading switch: read it, or set it to active, reducing or halted."""

from __future__ import annotations

import logging

from api.deps import ReadKey, ServiceDep, SessionDep, TradeKey, api_v1_router
from api.schemas import TradingStateOut, TradingStateUpdate, error_responses
from om_core import trading_state
from om_core.trading_state import TradingStatus

__all__ = ["router"]

log = logging.getLogger("api.trading_state")

router = api_v1_router("trading state")


def _out(status: TradingStatus) -> TradingStateOut:
    return TradingStateOut(state=status.state, reason=status.reason, updated_at=status.updated_at)


@router.get("/trading-state", summary="The current trading state")
async def get_trading_state(_key: ReadKey, session: SessionDep) -> TradingStateOut:
    return _out(await trading_state.get_state(session))


@router.put(
    "/trading-state",
    summary="Set the trading state",
    description="`halted` stops every new order; `reducing` lets through only orders that "
    "shrink a position; `active` trades normally. Orders already open are left alone (cancel "
    "them separately). Takes effect for the next signal decided; emits "
    "`trading_state.changed` on `order-manager.order_events`.",
    responses=error_responses(400, 403, 422),
)
async def put_trading_state(
    key: TradeKey, service: ServiceDep, body: TradingStateUpdate
) -> TradingStateOut:
    async with service.sessions() as session, session.begin():
        status = await trading_state.set_state(session, body.state, body.reason, key.actor)
    if status.changed:
        service.relay.notify()
        log.warning(
            "trading state set to %s by %s: %r", status.state.value, key.actor, status.reason
        )
    return _out(status)
