"""The operator console: server-rendered pages (Jinja2) made live with htmx and server-sent
events, charts drawn with uPlot; every asset is inside this package (no CDN, no Node at run
time). See docs/console.md."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console import actions, live, pages, signin
from api.console.auth import SessionStore
from api.console.render import STATIC_DIR, TEMPLATES
from api.security import KeyRing
from om_core.orders.status import IN_DOUBT, OPEN
from om_core.service import Service

__all__ = ["install_console", "stop_console"]


def install_console(app: FastAPI, service: Service, keyring: KeyRing) -> None:
    TEMPLATES.globals["open_statuses"] = sorted(s.value for s in OPEN - IN_DOUBT)
    app.state.console_sessions = SessionStore(keyring)
    app.state.console_live = live.Broadcaster(service)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    signin.install_handlers(app)
    app.include_router(signin.router)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(live.router)


async def stop_console(app: FastAPI) -> None:
    """End every live stream (the server cannot stop while one is open)."""
    broadcaster = getattr(app.state, "console_live", None)
    if broadcaster is not None:
        await live.stop(broadcaster)
