"""FastAPI dependencies: the running service, its database sessions, the caller's key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Security

from api.schemas import error_responses
from api.security import Principal, require_read, require_trade
from om_core.db.session import AsyncSession
from om_core.service import Service

__all__ = [
    "ReadKey",
    "ServiceDep",
    "SessionDep",
    "TradeKey",
    "api_v1_router",
    "get_service",
    "get_session",
]


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def get_session(service: ServiceDep) -> AsyncIterator[AsyncSession]:
    async with service.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

#: Any valid API key (read or trade scope).
ReadKey = Annotated[Principal, Security(require_read)]
#: A valid API key with the trade scope; declare it on every route that changes state.
TradeKey = Annotated[Principal, Security(require_trade)]


def api_v1_router(tag: str) -> APIRouter:
    """A router under ``/api/v1`` whose every route needs at least a read key.

    Routes still name ``ReadKey`` or ``TradeKey`` themselves; the router-wide requirement is
    the floor, so a route added without either is not left open.
    """
    return APIRouter(
        prefix="/api/v1",
        tags=[tag],
        dependencies=[Security(require_read)],
        responses=error_responses(401),
    )
