"""Security headers on every response, and the Content-Security-Policy of GraphiQL.

Every HTTP response of the application (GraphQL answers, downloads, probes, CORS
preflights, the 500 of an unhandled error, a refused websocket handshake) carries:

- `X-Content-Type-Options: nosniff`: a browser never guesses a type other than the one sent;
- `Referrer-Policy: no-referrer`: no URL of ours (a calendar feed's carries its token) leaks
  to another site through `Referer`;
- `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no page of ours in a frame
  (clickjacking);
- `Content-Security-Policy: default-src 'none'; …` unless the route set its own: an API
  answer opened as a page can load and run nothing. GraphiQL (development only) gets one
  of its own, `graphiql_csp`: scripts from unpkg.com (each pinned by its integrity hash in
  the page) and the page's one inline script by its SHA-256, nothing else;
- `Strict-Transport-Security` when `PUBLIC_URL` is https.

`SecureStarlette` applies them outside Starlette's own error middleware, so that even the
500 answered for an unhandled exception carries them. Headers a response already has are
kept (a download's `sandbox` CSP, GraphiQL's).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette._utils import get_route_path
from starlette.applications import Starlette

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from api.config import Settings

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HSTS = "max-age=31536000; includeSubDomains"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def security_headers(settings: Settings) -> list[tuple[str, str]]:
    """The headers every response carries, unless it has its own."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", API_CSP),
    ]
    if settings.public_url.startswith("https://"):
        headers.append(("Strict-Transport-Security", HSTS))
    return headers


def graphiql_csp(html: str, host: str) -> str:
    """The policy of strawberry's GraphiQL page: its scripts from unpkg.com, its inline
    script by hash; styles and fonts from unpkg.com and Google Fonts (GraphiQL's
    stylesheet imports them); queries and subscriptions to this host only."""
    hashes = " ".join(f"'sha256-{_sha256(script)}'" for script in _INLINE_SCRIPT.findall(html))
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src https://unpkg.com {hashes}".rstrip(),
            "style-src https://unpkg.com https://fonts.googleapis.com 'unsafe-inline'",
            "font-src https://unpkg.com https://fonts.gstatic.com data:",
            "img-src 'self' data:",
            f"connect-src 'self' ws://{host} wss://{host}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


class SecurityHeaders:
    """ASGI middleware adding `headers` to every HTTP response (and websocket denial) that
    does not already carry them."""

    def __init__(self, app: ASGIApp, headers: Iterable[tuple[str, str]]) -> None:
        self.app = app
        self.headers = [(name.lower().encode(), value.encode()) for name, value in headers]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, self.sending(send))

    def sending(self, send: Send) -> Send:
        """`send`, adding the headers a response start lacks."""

        async def send_with_headers(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                present = {name.lower() for name, _ in message.get("headers", ())}
                missing = [(n, v) for n, v in self.headers if n not in present]
                if missing:
                    message = {**message, "headers": [*message.get("headers", ()), *missing]}
            await send(message)

        return send_with_headers


class SecureStarlette(Starlette):
    """Starlette with `SecurityHeaders` outermost, around its error middleware too.

    `sockets` maps a path to the app that serves websockets there instead of Starlette's
    whole stack (api/app.py's `GraphQLSocket`: what applies to a socket, in fewer layers)."""

    def __init__(
        self,
        *args: Any,
        security_headers: Sequence[tuple[str, str]],
        sockets: Mapping[str, ASGIApp] | None = None,
        **kwargs: Any,
    ):
        self.security_headers = list(security_headers)
        self.sockets = dict(sockets or {})
        super().__init__(*args, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            socket = self.sockets.get(get_route_path(scope))
            if socket is not None:
                scope["app"] = self  # as Starlette.__call__ does
                await socket(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), self.security_headers)


__all__ = ["API_CSP", "SecureStarlette", "SecurityHeaders", "graphiql_csp", "security_headers"]
