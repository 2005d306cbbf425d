"""The FastAPI application, served by ``om run`` inside the service process."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from api.console import install_console
from api.edge import ApiEdge
from api.errors import install_error_handlers
from api.links import install_openapi_extras
from api.routes import (
    charts,
    dead_letters,
    health,
    metrics,
    orders,
    plugins,
    positions,
    signals,
    sync,
    trading_state,
)
from api.security import KeyRing
from api.stored import SafeJSONResponse
from om_core.service import Service

log = logging.getLogger("api")


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        default_response_class=SafeJSONResponse,
        title="Order Manager",
        version="0.1.0",
        description="Signals in, exchange orders out; orders, positions and reconciliation.\n\n"
        "Every `/api/v1` route needs an API key in the `X-API-Key` header: `read` keys may "
        "call the GET routes, `trade` keys every route. Errors are always "
        '`{"error": {"code", "message", "details"}}`. Decimals are strings.',
    )
    app.state.service = service
    app.state.keyring = KeyRing(service.settings.api_keys)
    if not app.state.keyring.enabled:
        log.warning("OM_API_KEYS is empty: the API answers every request without a key")
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(orders.router)
    app.include_router(positions.router)
    app.include_router(signals.router)
    app.include_router(trading_state.router)
    app.include_router(sync.router)
    app.include_router(dead_letters.router)
    app.include_router(plugins.router)
    app.include_router(charts.router)
    install_console(app, service, app.state.keyring)
    install_openapi_extras(app)
    # Outside every route: keys and body size are checked before a body is read.
    app.add_middleware(
        ApiEdge,
        keyring=app.state.keyring,
        max_body_bytes=service.settings.api_max_body_bytes,
        routes=app.router.routes,
    )
    return app
