"""The sign-in form, sign-out, and what an unsigned or unauthorized request is answered."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.auth import (
    COOKIE,
    LIFETIME_SECONDS,
    LOGIN_CSRF_COOKIE,
    Forbidden,
    SignInRequired,
    check_csrf,
    current_session,
    login_csrf_ok,
    login_csrf_token,
    read_form,
    store,
)
from api.console.render import fragment, page

__all__ = ["install_handlers", "router"]

router = APIRouter(include_in_schema=False)


def _local(path: str) -> str:
    """Only a path on this site is a place to go back to after signing in."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_form(request: Request, next_path: str, error: str | None, status: int) -> HTMLResponse:
    token = login_csrf_token()
    response = page("login.html", status, csrf=token, next=_local(next_path), error=error)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/console/login",
    )
    return response


@router.get("/console/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/") -> Response:
    if not store(request).sign_in_needed:
        return RedirectResponse(_local(next), status_code=303)
    return _login_form(request, next, None, 200)


@router.post("/console/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    sessions = store(request)
    if not sessions.sign_in_needed:
        return RedirectResponse("/", status_code=303)
    form = await read_form(request)
    next_path = _local(form.get("next", "/"))
    if not login_csrf_ok(request, form.get("csrf_token", "")):
        return _login_form(request, next_path, "The form expired; please sign in again.", 403)
    signed = sessions.sign_in(form.get("api_key", ""))
    if signed is None:
        return _login_form(request, next_path, "That API key is not valid.", 401)
    token, _session = signed
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=LIFETIME_SECONDS,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@router.post("/console/logout")
async def logout(request: Request) -> Response:
    session = current_session(request)
    if session is not None:
        await check_csrf(request, session)
        store(request).sign_out(request.cookies.get(COOKIE))
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, _exc: SignInRequired) -> Response:
        target = "/console/login?next=" + quote(
            request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe=""
        )
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(target, status_code=303)
        return fragment(
            "message.html", 401, kind="error", text="sign in first", code="sign_in_required"
        )

    @app.exception_handler(Forbidden)
    async def forbidden(_request: Request, exc: Forbidden) -> Response:
        return fragment("message.html", 403, kind="error", text=exc.message, code="forbidden")
