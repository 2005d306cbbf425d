"""Prometheus metrics, unauthenticated like ``/health`` (scrapers rarely send keys)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import ServiceDep
from om_core import metrics

__all__ = ["router"]

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    description="Signals by outcome, orders by status, placement and exchange latency, "
    "exchange errors by code, rate-limit headroom, outbox backlog, dead-letter queues and "
    "consumer lag. No API key needed.",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {
                "text/plain": {
                    "schema": {"type": "string"},
                    "example": "# TYPE om_outbox_backlog gauge\nom_outbox_backlog 0.0\n",
                }
            },
        }
    },
)
async def get_metrics(request: Request, service: ServiceDep) -> Response:
    gauges: metrics.StateGauges | None = getattr(request.app.state, "state_gauges", None)
    if gauges is None:
        gauges = metrics.StateGauges(service.sessions, service.bus)
        request.app.state.state_gauges = gauges
    await gauges.refresh()
    return Response(content=metrics.render(), media_type=metrics.CONTENT_TYPE)
