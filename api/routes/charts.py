"""The last hour of the service's own metrics, sampled in memory (the console's charts)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.deps import ReadKey, ServiceDep, api_v1_router

__all__ = ["Charts", "router"]

router = api_v1_router("charts")


class Chart(BaseModel):
    title: str
    unit: str
    labels: list[str] = Field(description="One series per label (an outcome, a code, a symbol).")
    values: list[list[float | None]] = Field(
        description="Per label, one value per time in `times`; `null` where unknown."
    )


class Charts(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "interval": 5.0,
                    "window": 3600.0,
                    "times": [1767607200.0, 1767607205.0],
                    "charts": {
                        "outbox_backlog": {
                            "title": "Outbox backlog",
                            "unit": "events",
                            "labels": ["unsent"],
                            "values": [[0.0, 2.0]],
                        }
                    },
                }
            ]
        }
    )

    interval: float = Field(description="Seconds between samples.")
    window: float = Field(description="Seconds of history kept.")
    times: list[float] = Field(description="Sample times, Unix seconds (UTC).")
    charts: dict[str, Chart] = Field(
        description="`signals` (per second by outcome), `placement_latency` (p50/p99 ms), "
        "`exchange_errors` (by code), `rate_limit_headroom` (by group), `outbox_backlog`, "
        "`dead_letters` (`.dlq` depth and pending in the table), `realized_pnl` and "
        "`unrealized_pnl` (by symbol)."
    )


@router.get(
    "/charts",
    summary="The last hour of metrics, for charts",
    description="Sampled every `OM_METRICS_SAMPLE_SECONDS` from the service's own metrics "
    "and state and kept in memory (a restart starts an empty hour).",
)
async def get_charts(_key: ReadKey, service: ServiceDep) -> Charts:
    return Charts.model_validate(service.sampler.series())
