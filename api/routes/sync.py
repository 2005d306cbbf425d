"""Reconcile with the exchange now: the operator's "make the books agree" button."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict

from api.deps import ServiceDep, TradeKey, api_v1_router
from api.schemas import error_responses

__all__ = ["router"]

log = logging.getLogger("api.sync")

router = api_v1_router("sync")


class DriftOut(BaseModel):
    kind: str
    key: str
    before: dict[str, Any]
    after: dict[str, Any]


class SyncReport(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "dry_run": False,
                    "started_at": "2026-11-25T10:00:00+00:00",
                    "orders_checked": 3,
                    "orders_updated": 1,
                    "orders_imported": 0,
                    "positions_checked": 2,
                    "positions_corrected": 0,
                    "positions_deferred": 0,
                    "drifts": [
                        {
                            "kind": "order",
                            "key": "5811d07e-fc1a-5458-a5fa-df0d591c144f",
                            "before": {"status": "new", "filled_qty": "0"},
                            "after": {"status": "filled", "filled_qty": "0.01"},
                        }
                    ],
                    "errors": [],
                }
            ]
        }
    )

    dry_run: bool
    started_at: str
    orders_checked: int
    orders_updated: int
    orders_imported: int
    positions_checked: int
    positions_corrected: int
    #: Positions not compared this time: a fill reached the book after the exchange's
    #: listing, so the listing is older than the book (the next run compares again).
    positions_deferred: int = 0
    drifts: list[DriftOut]
    errors: list[str]


@router.post(
    "/sync",
    summary="Reconcile orders and positions with the exchange now",
    description="Every order this service thinks is open or in doubt is looked up on the "
    "exchange by client id (falling back to order history and executions); exchange orders "
    "we do not know are imported as external orders; positions are compared and corrected. "
    "Corrections publish the same events the order stream would. `dry_run=true` reports "
    "the drift without changing anything (positions are compared as the database stands, "
    "before the order corrections a real run would apply). A position whose book holds a "
    "fill executed after the exchange's listing is not corrected but counted in "
    "`positions_deferred`: the listing is older than the book.",
    responses=error_responses(403, 422),
)
async def sync(
    key: TradeKey,
    service: ServiceDep,
    dry_run: bool = Query(default=False, description="report only, change nothing"),
) -> SyncReport:
    report = await service.reconciler.run(dry_run=dry_run)
    if report.drifts and not dry_run:
        log.warning("sync by %s corrected %d drift(s)", key.actor, len(report.drifts))
    return SyncReport.model_validate(report.as_dict())
