"""The FastAPI application, served by ``om run`` inside the service process."""

from __future__ import annotations

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.routes import health
from om_core.service import Service


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="Order Manager",
        version="0.1.0",
        description="Signals in, exchange orders out; orders, positions and reconciliation.",
    )
    app.state.service = service
    install_error_handlers(app)
    app.include_router(health.router)
    return app
