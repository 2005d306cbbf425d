"""FastAPI dependencies: the running service and its database sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from om_core.db.session import AsyncSession
from om_core.service import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def get_session(service: ServiceDep) -> AsyncIterator[AsyncSession]:
    async with service.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
