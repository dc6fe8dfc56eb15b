"""Response headers for every dashboard response, and the same-origin check for its forms."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Scripts and styles from the coordinator only (no inline script, no CDN); data from the
# coordinator's API only. ECharts draws on canvas and needs nothing more.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


class SecurityHeaders:
    """ASGI wrapper adding SECURITY_HEADERS (used around the static files mount)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def same_origin(request: Request) -> bool:
    """False when a browser tells us a form post came from another site (login CSRF).

    Browsers send Sec-Fetch-Site and Origin; clients that send neither (curl, tests) pass.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc == request.headers.get("host")


CSRF_HEADER = "x-csrf-token"
_CSRF_LABEL = b"libra-dashboard-csrf-v1"


def csrf_token(session_token: str) -> str:
    """The CSRF token of a dashboard session: an HMAC keyed by the session's API token.

    Stateless (any worker computes it), bound to the session, and useless without it; another
    site can neither read it from the page nor derive it (the cookie is HttpOnly).
    """
    return hmac.new(session_token.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(request: Request, session_token: str) -> bool:
    sent = request.headers.get(CSRF_HEADER, "")
    return hmac.compare_digest(sent.encode("utf-8"), csrf_token(session_token).encode("utf-8"))
