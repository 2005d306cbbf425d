"""Liveness and readiness, without authentication and without details beyond up/down."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: database and broker reachable, consumers running")
async def ready(service: ServiceDep) -> JSONResponse:
    checks = await service.ready() if service.running else {"service": False}
    ok = all(checks.values())
    return JSONResponse(
        status_code=200 if ok else 503,
        content={
            "status": "ready" if ok else "not_ready",
            "checks": {k: "up" if v else "down" for k, v in checks.items()},
        },
    )
