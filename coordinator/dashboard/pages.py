"""Dashboard routes: login/logout and one HTML shell per view (data comes from /v1/...)."""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from protocol.errors import ProtocolError

from ..auth import Principal, Role, Scope, anonymous
from ..db import new_session
from ..deps import SESSION_COOKIE, SessionDep, token_principal
from .admin import admin_router
from .render import PAGES, Page, can_view, login_html, message_html, page_html
from .security import SECURITY_HEADERS, csrf_token, same_origin

MAX_LOGIN_BODY = 16 * 1024


def _html(body: str, status: int = 200) -> HTMLResponse:
    response = HTMLResponse(body, status_code=status)
    _harden(response)
    return response


def _harden(response: Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers["cache-control"] = "no-store"


def _redirect(location: str) -> RedirectResponse:
    response = RedirectResponse(location, status_code=303)
    _harden(response)
    return response


def _safe_next(value: str | None) -> str:
    # Only paths inside the dashboard: never an open redirect to another site.
    if (
        value
        and value.startswith("/dashboard/")
        and not any(c in value for c in ("\\", "\n", "\r"))
    ):
        return value
    return "/dashboard/"


def _login_redirect(request: Request, reason: str | None = None) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/dashboard/login?next={quote(target, safe='')}"
    if reason:
        location += f"&reason={quote(reason, safe='')}"
    response = _redirect(location)
    if reason:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _cookie_principal(request: Request, session: Session) -> Principal | str | None:
    """The caller's principal, None when not logged in, or why the cookie no longer works."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            return token_principal(request, session, token.strip())
        except ProtocolError as exc:
            return exc.message
    if request.app.state.settings.anonymous_role == "viewer":
        return anonymous(Role.VIEWER)
    return None


def _usable(principal: Principal) -> bool:
    return principal.can(Scope.PICTURE_READ) or principal.can(Scope.MEMBERS_WRITE)


def dashboard_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/dashboard")
    def root() -> RedirectResponse:
        return _redirect("/dashboard/")

    def add_page(page: Page) -> None:
        def view(request: Request, session: SessionDep) -> Response:
            principal = _cookie_principal(request, session)
            if principal is None:
                return _login_redirect(request)
            if isinstance(principal, str):
                return _login_redirect(request, principal)
            if not can_view(principal, page):
                what = "admins" if page.admin else "roles that may read the picture"
                message = f"{page.title} is for {what}; role {principal.role.value} may not see it."
                return _html(message_html("Forbidden", message, principal), status=403)
            query = {k: v for k, v in request.query_params.items()}
            token = request.cookies.get(SESSION_COOKIE, "").strip()
            body = page_html(
                page,
                principal,
                query,
                now=request.app.state.clock(),
                csrf=csrf_token(token) if token else "",
            )
            return _html(body)

        router.add_api_route(page.path, view, methods=["GET"], name=f"dashboard_{page.key}")

    for page in PAGES:
        add_page(page)

    @router.get("/dashboard/login")
    def login_form(request: Request) -> Response:
        return _html(
            login_html(
                next_path=_safe_next(request.query_params.get("next")),
                error=request.query_params.get("reason"),
                anonymous_viewer=request.app.state.settings.anonymous_role == "viewer",
            )
        )

    @router.post("/dashboard/login")
    async def login(request: Request) -> Response:
        anonymous_viewer = request.app.state.settings.anonymous_role == "viewer"

        def refuse(message: str, status: int, next_path: str = "/dashboard/") -> Response:
            body = login_html(next_path=next_path, error=message, anonymous_viewer=anonymous_viewer)
            return _html(body, status=status)

        if not same_origin(request):
            return refuse("login refused: the form was posted from another site", 403)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                return refuse("login form too large", 413)
        try:
            form = parse_qs(body.decode("utf-8"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            return refuse("login form could not be read", 400)
        next_path = _safe_next((form.get("next") or [""])[0])
        token = (form.get("token") or [""])[0].strip()
        if not token:
            return refuse("paste an API token", 422, next_path)

        def check() -> Principal | str:
            with new_session(request.app.state.engine) as session:
                try:
                    return token_principal(request, session, token)
                except ProtocolError as exc:
                    return exc.message

        principal = await run_in_threadpool(check)
        if isinstance(principal, str):
            return refuse(f"login failed: {principal}", 401, next_path)
        if not _usable(principal):
            return refuse(
                f"role {principal.role.value} has no dashboard views; use a viewer or admin token",
                403,
                next_path,
            )
        response = _redirect(next_path)
        # A session cookie (no Max-Age): closing the browser ends the login, which is what an
        # analyst on a shared machine needs; the token's own expiry still applies.
        response.set_cookie(
            SESSION_COOKIE,
            token,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/dashboard/logout")
    def logout(request: Request) -> Response:
        if not same_origin(request):
            return _html(message_html("Forbidden", "cross-site logout refused", None), 403)
        response = _redirect("/dashboard/login")
        response.delete_cookie(
            SESSION_COOKIE, path="/", httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    router.include_router(admin_router())
    return router
