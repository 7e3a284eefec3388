"""The Starlette application: /graphql (HTTP and websocket), health probes, the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.exceptions import HTTPException, WebSocketException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from tortoise import Tortoise
from tortoise.contrib.starlette import RegisterTortoise

from api.attachments import attachment_content
from api.auth import bearer_from_header, bearer_from_params, client_address
from api.budget import BudgetMiddleware, RequestBudget, admit_socket
from api.calendar import calendar_feed
from api.config import Settings
from api.context import Context, Services
from api.db import tortoise_config
from api.downloads import document_content
from api.errors import from_domain, infrastructure_errors, unavailable
from api.export import export_space
from api.franceconnect import franceconnect_routes
from api.franceconnect_client import FranceConnect
from api.jobs import Scheduler
from api.log_privacy import install as keep_client_values_out_of_logs
from api.log_privacy import request_target
from api.oauth import oauth_routes
from api.schema import schema
from api.security_headers import SecureStarlette, SecurityHeaders, security_headers
from api.view import GraphQLView, json_error_response
from api.ws_operations import SessionEnded
from models.access import ANONYMOUS
from models.crypto import Vault
from models.errors import DomainError, Unauthenticated
from models.session import authenticate
from subscriptions.broadcast import EventBus

logger = logging.getLogger(__name__)

READY_TIMEOUT = 3.0  # seconds for each dependency to answer /readyz


class EspaceSanteGraphQL(GraphQLView[Context, None]):
    def __init__(self, services: Services, **kwargs: Any) -> None:
        super().__init__(schema, **kwargs)
        self.services = services

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        settings = self.services.settings
        actor = ANONYMOUS
        if isinstance(request, Request):
            actor = await authenticate(
                bearer_from_header(request.headers.get("authorization")),
                vault=self.services.vault,
            )
        return Context(
            request=request,
            response=response,
            services=self.services,
            actor=actor,
            client=client_address(request, settings),
        )

    async def on_ws_connect(self, context: Context) -> Any:
        """A bad token at connection_init closes the socket (4403)."""
        try:
            token = bearer_from_params(context.connection_params)
            context.actor = await authenticate(token, vault=self.services.vault)
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED"}) from exc
        return None

    async def operation_context(self, socket_context: Context) -> Context:
        """Each operation on a socket: its token re-authenticated first, as an HTTP request's
        is (a revoked or expired session ends the socket: `SessionEnded`), then a context of
        its own (request id, clock, loaders, audit trail). api/ws_operations.py."""
        try:
            actor = await authenticate(
                bearer_from_params(socket_context.connection_params), vault=self.services.vault
            )
        except Unauthenticated as exc:
            raise SessionEnded(from_domain(exc)) from exc
        if actor == socket_context.actor:  # immutable: one per socket, not one per operation
            actor = socket_context.actor
        return socket_context.for_operation(actor)

    def session_ended(self, context: Context) -> bool:
        return context.session_ended

    def operation_finished(self, context: Context) -> None:
        context.release()  # its loaders freed now, not by the cyclic collector


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    keep_client_values_out_of_logs()  # uvicorn's access log, our error logs: api/log_privacy.py
    services = Services(
        settings=settings,
        vault=Vault(settings.secret_key),
        bus=EventBus(settings.broadcast_url),
        blobs=settings.blob_store(),
    )
    budget = services.budget = RequestBudget(settings, services.vault)  # api/budget.py
    view = EspaceSanteGraphQL(
        services,
        graphql_ide="graphiql" if settings.development else None,
        allow_queries_via_get=True,
        max_body_bytes=settings.max_request_bytes,
        max_file_bytes=max(settings.max_upload_bytes, settings.max_attachment_bytes),
        allowed_origins=settings.allowed_origins,
        connection_init_wait_timeout=timedelta(seconds=10),
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = {"database": False, "broadcast": False, "objectStore": False}
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await Tortoise.get_connection("default").execute_query("SELECT 1")
            checks["database"] = True
        except Exception:
            logger.warning("readiness: database unreachable", exc_info=True)
        checks["broadcast"] = await services.bus.ping()
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await services.blobs.ping()
            checks["objectStore"] = True
        except Exception:
            logger.warning("readiness: object store unreachable", exc_info=True)
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {
            401: "UNAUTHENTICATED",
            403: "FORBIDDEN",
            404: "NOT_FOUND",
            413: "PAYLOAD_TOO_LARGE",
        }
        return json_error_response(  # with its headers: a 405's Allow
            exc.status_code,
            code.get(exc.status_code, "BAD_USER_INPUT"),
            str(exc.detail),
            headers=exc.headers,
        )

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        exc = from_domain(exc)
        status = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404}.get(
            str((exc.extensions or {}).get("code")), 400
        )
        return JSONResponse({"errors": [exc.formatted]}, status_code=status)

    async def dependency_down(request: Request, exc: Exception) -> Response:
        """The database, Redis or the object store is unreachable: 503 with Retry-After."""
        down = unavailable(exc)
        if down is None:
            return await server_error(request, exc)
        logger.warning("dependency unreachable (%s): %r", request_target(request.url.path), exc)
        return json_error_response(
            503,
            down.code,
            down.message,
            extensions={"retryAfter": down.retry_after},
            headers={"Retry-After": str(down.retry_after)},
        )

    async def server_error(request: Request, exc: Exception) -> Response:
        if unavailable(exc) is not None:  # wrapped in another error
            return await dependency_down(request, exc)
        import uuid

        request_id = uuid.uuid4().hex
        logger.error("unhandled error (request %s)", request_id, exc_info=exc)
        return JSONResponse(
            {
                "errors": [
                    {
                        "message": "Internal server error.",
                        "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
                    }
                ]
            },
            status_code=500,
        )

    franceconnect = FranceConnect.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with RegisterTortoise(app, config=tortoise_config(settings.database_url)):
            await services.bus.connect()
            scheduler = Scheduler(settings, services.bus, services.blobs)
            if settings.scheduler_enabled:
                scheduler.start()
            if settings.environment != "test":
                # What start-up built lives as long as the process: out of the collector's
                # sight, each full collection is shorter (a pause every socket feels).
                gc.collect()
                gc.freeze()
                # A request left a few hundred objects in reference cycles (graphql-core's
                # executor, the dataloaders' futures): collected every 700 of them, the young
                # generation was swept every few requests, each sweep walking every object
                # of the requests in flight. Every 10,000: 4 % less CPU per dossier read in
                # one bench.plans run (4.22 against 4.39 ms), p99 98 against 135 ms; the
                # garbage held meanwhile is a few MB at most. Those cycles are now cut as an
                # operation ends (`Context.release`, `PlannedExecutor`'s helpers): a dossier
                # read leaves none (tests/test_request_garbage.py); other paths may.
                gc.set_threshold(10_000, 10, 10)
            try:
                yield
            finally:
                await scheduler.stop()
                await services.bus.disconnect()
                await services.blobs.aclose()
                if franceconnect is not None:
                    await franceconnect.aclose()
                await budget.close()

    headers = security_headers(settings)  # on every response: api/security_headers.py
    graphql_socket = GraphQLSocket(view, budget, SecurityHeaders(view, headers))
    app = SecureStarlette(
        security_headers=headers,
        sockets={"/graphql": graphql_socket},
        routes=[
            # Every method reaches the view, which answers 405 with `Allow: GET, POST`.
            Route("/graphql", view),  # its websocket: `GraphQLSocket`, below
            Route("/documents/{id}/content", document_content, methods=["GET"]),
            Route("/export/{patient_id}.fhir.json", export_space, methods=["GET"]),
            Route("/attachments/{id}/content", attachment_content, methods=["GET"]),
            Route("/calendar/{token}.ics", calendar_feed, methods=["GET"]),
            *franceconnect_routes(),  # 404 unless FRANCECONNECT_* are set
            *oauth_routes(),  # partner apps: token, revocation, metadata (api/oauth.py)
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        exception_handlers={
            HTTPException: http_error,
            DomainError: api_error,
            **dict.fromkeys(infrastructure_errors(), dependency_down),
            Exception: server_error,
        },
        lifespan=lifespan,
        middleware=[
            # Browsers on the allowed origins only; tokens travel in headers, never cookies.
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Apollo-Require-Preflight",
                    "X-Apollo-Operation-Name",
                    "X-Query-Cost",  # asks for extensions.cost (api/extensions/cost.py)
                    # Trusted documents per client (api/extensions/persisted.py).
                    "apollographql-client-name",
                    "apollographql-client-version",
                ],
                expose_headers=["Retry-After"],  # of a RATE_LIMITED answer (429)
                max_age=600,
            ),
            # Inside CORS, so that a 429 reaches a browser with its CORS headers.
            Middleware(BudgetMiddleware, budget=budget),
            Middleware(DirectRoutes, routes={"/graphql": view}),
        ],
    )
    app.state.services = services
    app.state.franceconnect = franceconnect
    graphql_socket.handle_errors_as(app)
    return app


class DirectRoutes:
    """Innermost middleware: an HTTP request for one of `routes`' paths goes straight to its
    app, past Starlette's exception middleware and router (each request paid for both, and
    for their wrapping of `send`). Such an app answers every error itself (GraphQLView
    does, in `_respond`); what escapes it still reaches the server error middleware,
    outside. Other requests, and websockets, take the usual way."""

    __slots__ = ("app", "routes")

    def __init__(self, app: ASGIApp, routes: dict[str, ASGIApp]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.routes.get(get_route_path(scope))
            if route is not None:
                await route(scope, receive, send)
                return
        await self.app(scope, receive, send)


class GraphQLSocket:
    """The GraphQL websocket's way through the application, instead of Starlette's whole
    stack. Every ASGI layer a socket passes through stays suspended, with its frame, for as
    long as the socket lives: through Starlette's stack (security headers, error
    middleware, CORS, budget, exception middleware, router, route) that was ~2.5 KB of
    each idle subscription (bench.fanout). A socket gets what applies to it, with the same
    objects, in one frame: the security headers of a refused handshake's answer, the
    budget's charge of a handshake (`admit_socket`), the application's exception handlers
    as Starlette's exception middleware applies them to a websocket (looked up by the
    error's class; the 500 handler is HTTP's). CORS is HTTP's too. Another websocket path
    still goes through the whole stack (and finds nothing)."""

    __slots__ = ("budget", "handlers", "headers", "view")

    def __init__(self, view: ASGIApp, budget: RequestBudget, headers: SecurityHeaders) -> None:
        self.view = view
        self.budget = budget
        self.headers = headers
        self.handlers: dict[type[BaseException], Any] = {}

    def handle_errors_as(self, app: Starlette) -> None:
        """The exception handlers of `app`'s stack (all but its 500 one), after Starlette's
        own for `WebSocketException`, as its exception middleware orders them."""
        defaults = ExceptionMiddleware(self.view)
        self.handlers = {WebSocketException: defaults.websocket_exception}
        for key, handler in app.exception_handlers.items():
            if isinstance(key, type) and key is not Exception:
                self.handlers[key] = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        send = self.headers.sending(send)
        if not await admit_socket(self.budget, scope, receive, send):
            return
        try:
            await self.view(scope, receive, send)
        except Exception as exc:
            handler = next(
                (self.handlers[cls] for cls in type(exc).__mro__ if cls in self.handlers), None
            )
            if handler is None:
                raise
            response = await handler(WebSocket(scope, receive, send), exc)
            if response is not None:
                await response(scope, receive, send)
