"""The HTTP edge of GraphQL: strawberry's ASGI view made GraphQL-over-HTTP compliant.

- Answers `application/graphql-response+json` when the client asks for it; then a request
  that never executed (parse, validation, unknown operation, bad variables) answers 400.
  Under `application/json` it answers 200, as the spec asks of legacy clients.
- Every transport failure is a JSON body `{"errors": [{"message", "extensions": {"code"}}]}`:
  malformed requests are BAD_USER_INPUT, a body over `max_body_bytes` PAYLOAD_TOO_LARGE
  (counted while reading, not taken from Content-Length), a crash INTERNAL_SERVER_ERROR.
- Multipart uploads need a header a browser form cannot send, so they cannot be forged
  cross-site (CSRF): `Apollo-Require-Preflight` or `X-Apollo-Operation-Name`. A file part
  over `max_file_bytes` stops the read as soon as that many of its bytes have arrived
  (413 PAYLOAD_TOO_LARGE): nothing larger is ever spooled to disk.
- Every answer carries `Cache-Control: no-store`: any of them may hold health data.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from cross_web import AsyncHTTPRequestAdapter, FormData, HTTPException, StarletteRequestAdapter
from graphql import GraphQLError
from starlette import datastructures
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from api.errors import (
    BadUserInput,
    Forbidden,
    InternalError,
    NotFound,
    PayloadTooLarge,
    from_domain,
)
from api.extensions.errors import VALIDATION_FAILED, error_code, mask_error
from api.extensions.persisted import DocumentRegistry, DocumentRequest, http_status
from api.ws_operations import LegacyWSHandler, TransportWSHandler
from models.errors import DomainError

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send
    from strawberry.http.base import BaseRequestProtocol
    from strawberry.http.ides import GraphQL_IDE
    from strawberry.schema import BaseSchema

logger = logging.getLogger(__name__)

ContextT = TypeVar("ContextT")
RootT = TypeVar("RootT")

JSON = "application/json"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
MULTIPART = "multipart/form-data"

PREFLIGHT_HEADERS = ("apollo-require-preflight", "x-apollo-operation-name")


def json_error_response(
    status: int,
    code: str,
    message: str,
    *,
    extensions: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    media_type: str = JSON,
) -> JSONResponse:
    """A GraphQL-shaped error body, for this view and for the app's other routes."""
    error = {"message": message, "extensions": {"code": code, **(extensions or {})}}
    return JSONResponse(
        {"errors": [error]}, status_code=status, headers=headers, media_type=media_type
    )


def negotiate_media_type(accept: str | None) -> str:
    """graphql-response+json if the client ranks it at least as high as plain JSON."""
    best: dict[str, float] = {}
    for item in (accept or "").split(","):
        media_range, _, params = item.strip().partition(";")
        media_range = media_range.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = {
            GRAPHQL_RESPONSE_JSON: GRAPHQL_RESPONSE_JSON,
            JSON: JSON,
            "application/*": JSON,
            "*/*": JSON,
        }.get(media_range)
        if kind is not None:
            best[kind] = max(best.get(kind, 0.0), quality)
    wanted = best.get(GRAPHQL_RESPONSE_JSON, 0.0)
    return GRAPHQL_RESPONSE_JSON if wanted > 0 and wanted >= best.get(JSON, 0.0) else JSON


class TransportError(Exception):
    """A request refused before GraphQL sees it; rendered by `json_error_response`."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


@dataclasses.dataclass
class DocumentRequestData(GraphQLRequestData):
    """A request as strawberry parses it, with the `documentId` of a persisted document."""

    document_id: object = None


class _BodyTooLarge(Exception):
    pass


class _FileTooLarge(Exception):
    pass


class _LimitedMultiPartParser(MultiPartParser):
    """Starlette's parser (which limits non-file fields only), with a limit per file part
    checked as its bytes arrive, before they are written to the spool file."""

    def __init__(
        self,
        headers: datastructures.Headers,
        stream: AsyncGenerator[bytes, None],
        *,
        max_file_bytes: int,
    ) -> None:
        super().__init__(headers, stream)
        self.max_file_bytes = max_file_bytes
        self._file_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._file_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is not None:
            self._file_bytes += end - start
            if self._file_bytes > self.max_file_bytes:
                raise _FileTooLarge  # the parser closes the spool files and re-raises
        super().on_part_data(data, start, end)


class _GraphQLRequest(Request):
    """A request whose multipart body is parsed with a per-file limit."""

    def __init__(self, scope: Scope, receive: Receive, *, max_file_bytes: int | None) -> None:
        super().__init__(scope, receive)
        self.max_file_bytes = max_file_bytes
        self._uploads: datastructures.FormData | None = None

    async def uploads(self) -> datastructures.FormData:
        if self._uploads is None:
            if self.max_file_bytes is None:
                self._uploads = await self.form()
            else:
                try:
                    async with aclosing(self.stream()) as stream:
                        parser = _LimitedMultiPartParser(
                            self.headers, stream, max_file_bytes=self.max_file_bytes
                        )
                        self._uploads = await parser.parse()
                except MultiPartException as exc:
                    raise TransportError(400, BadUserInput.code, exc.message) from exc
        return self._uploads

    async def close(self) -> None:
        if self._uploads is not None:
            await self._uploads.close()
        await super().close()


class _RequestAdapter(StarletteRequestAdapter):
    def __init__(self, request: Request) -> None:
        super().__init__(request)
        self.request = request

    async def get_form_data(self) -> FormData:
        if not isinstance(self.request, _GraphQLRequest):
            return await super().get_form_data()
        form = await self.request.uploads()
        return FormData(files=form, form=form)


def _capped(receive: Receive, limit: int) -> Receive:
    received = 0

    async def capped_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _BodyTooLarge
        return message

    return capped_receive


def _never_executed(result: ExecutionResult) -> bool:
    """Errors before execution have no path; an executed operation's errors all do."""
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


class GraphQLView(GraphQL[ContextT, RootT]):
    """Subclass it for `get_context`, `get_root_value`, `on_ws_connect`, and for the context
    of each websocket operation, `operation_context` and `session_ended`."""

    # Each websocket operation on a context of its own, subscriptions only: api/ws_operations.py.
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    # Multipart bodies parsed with `max_file_bytes`, the largest file any upload may be (the
    # body limit alone when None); resolvers still apply their own limits to their files.
    request_adapter_class = _RequestAdapter

    def __init__(
        self,
        schema: BaseSchema,
        *,
        max_body_bytes: int,
        max_file_bytes: int | None = None,
        graphql_ide: GraphQL_IDE | None = "graphiql",
        allow_queries_via_get: bool = True,
        keep_alive: bool = False,
        keep_alive_interval: float = 1,
        subscription_protocols: Sequence[str] = (
            GRAPHQL_TRANSPORT_WS_PROTOCOL,
            GRAPHQL_WS_PROTOCOL,
        ),
        connection_init_wait_timeout: timedelta = timedelta(minutes=1),
        multipart_uploads_enabled: bool = True,
        max_subscriptions_per_connection: int | None = 100,
        allowed_origins: Sequence[str] = (),
    ) -> None:
        super().__init__(
            schema,
            graphql_ide=graphql_ide,
            allow_queries_via_get=allow_queries_via_get,
            keep_alive=keep_alive,
            keep_alive_interval=keep_alive_interval,
            subscription_protocols=subscription_protocols,
            connection_init_wait_timeout=connection_init_wait_timeout,
            multipart_uploads_enabled=multipart_uploads_enabled,
            max_subscriptions_per_connection=max_subscriptions_per_connection,
            allowed_origins=allowed_origins,
        )
        self.max_body_bytes = max_body_bytes
        self.max_file_bytes = max_file_bytes
        # Persisted documents: the registry's cache in this process (api/extensions/persisted.py).
        self.documents = DocumentRegistry()

    async def operation_context(self, socket_context: ContextT) -> ContextT:
        """The context one websocket operation runs with, derived from the socket's (built
        once by `get_context`): re-authorise and refresh it here, raising
        `api.ws_operations.SessionEnded` for a session that is no longer valid. By default,
        the socket's own."""
        return socket_context

    def session_ended(self, context: ContextT) -> bool:
        """Whether an operation, run with `context`, found its session ended (the socket
        then closes with 4401)."""
        return False

    async def reject_websocket(self, request: WebSocket) -> WebSocket:
        """A refused handshake (origin not allowed) answers 403 with a JSON body, as every
        error of the API does, where the server can send one (uvicorn can)."""
        if "websocket.http.response" in request.scope.get("extensions", {}):
            await request.send_denial_response(
                json_error_response(
                    403, Forbidden.code, "This origin may not open the GraphQL websocket."
                )
            )
            return request
        return await super().reject_websocket(request)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = _GraphQLRequest(
            scope, _capped(receive, self.max_body_bytes), max_file_bytes=self.max_file_bytes
        )
        try:
            response = await self._respond(request)
            response.headers["Cache-Control"] = "no-store"
            await response(scope, receive, send)
        finally:
            await request.close()  # uploaded files spooled to disk

    async def _respond(self, request: Request) -> Response:
        media_type = negotiate_media_type(request.headers.get("accept"))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return self._too_large(media_type)
        try:
            return await self.run(request)
        except _BodyTooLarge:
            return self._too_large(media_type)
        except _FileTooLarge:
            limit = _megabytes(self.max_file_bytes or 0)
            return json_error_response(
                413,
                PayloadTooLarge.code,
                f"A file is larger than the {limit} MB limit.",
                media_type=media_type,
            )
        except ClientDisconnect:  # nobody left to answer; not a server error
            return json_error_response(
                400, BadUserInput.code, "Client disconnected.", media_type=media_type
            )
        except TransportError as exc:
            return json_error_response(
                exc.status, exc.code, exc.message, headers=exc.headers, media_type=media_type
            )
        except HTTPException as exc:
            return self._http_exception_response(exc, request.method, media_type)
        except StarletteHTTPException as exc:  # request.form() on a malformed multipart body
            return json_error_response(
                exc.status_code, BadUserInput.code, exc.detail, media_type=media_type
            )
        except DomainError as domain_error:  # raised by get_context or get_root_value
            error = from_domain(domain_error)
            status = error.http_status if error.http_status >= 400 else self._status_of(media_type)
            return Response(
                self.encode_json({"errors": [error.formatted]}),
                status_code=status,
                media_type=media_type,
            )
        except Exception as exc:
            request_id = _request_id(request)
            logger.error(
                "Unhandled error in GraphQL view (request_id=%s)", request_id, exc_info=exc
            )
            return json_error_response(
                500,
                InternalError.code,
                InternalError.default_message,
                extensions={"requestId": request_id},
                media_type=media_type,
            )

    def _too_large(self, media_type: str) -> JSONResponse:
        return json_error_response(
            413,
            PayloadTooLarge.code,
            f"Request body larger than {self.max_body_bytes} bytes.",
            media_type=media_type,
        )

    @staticmethod
    def _status_of(media_type: str) -> int:
        """Status of a well-formed request that never executed (GraphQL-over-HTTP)."""
        return 400 if media_type == GRAPHQL_RESPONSE_JSON else 200

    def _http_exception_response(
        self, exc: HTTPException, method: str, media_type: str
    ) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, CannotGetOperationTypeError):
            # Unknown or ambiguous operation name: a request error, like validation.
            return json_error_response(
                self._status_of(media_type), VALIDATION_FAILED, exc.reason, media_type=media_type
            )
        if (
            isinstance(cause, InvalidOperationTypeError)
            and cause.operation_type is not OperationType.SUBSCRIPTION
            and method == "GET"
        ):
            return json_error_response(
                405, BadUserInput.code, exc.reason, headers={"Allow": "POST"}, media_type=media_type
            )
        if isinstance(cause, MissingQueryError):
            return json_error_response(
                400, BadUserInput.code, "The request has no GraphQL query.", media_type=media_type
            )
        if exc.status_code == 405:
            allow = {"Allow": "GET, POST"}
            return json_error_response(
                405, BadUserInput.code, exc.reason, headers=allow, media_type=media_type
            )
        code = NotFound.code if exc.status_code == 404 else BadUserInput.code
        return json_error_response(exc.status_code, code, exc.reason, media_type=media_type)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: ContextT,
        root_value: RootT | None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """strawberry's, but subscriptions are refused: they run over the websocket only
        (over HTTP graphql-core would run the stream as a plain field and fail); and the
        document a request names by its id is resolved first (`resolve_document`)."""
        allowed = OperationType.from_http(request_adapter.method) - {OperationType.SUBSCRIPTION}
        request_data = await self.resolve_document(request, context, request_data)
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except InvalidOperationTypeError as exc:
            reason = exc.as_http_error_reason(request_adapter.method)
            if exc.operation_type is OperationType.SUBSCRIPTION:
                reason = "Subscriptions are served over the websocket of /graphql only."
            raise HTTPException(400, reason) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "POST":
            content_type, _ = parse_content_type(request.content_type or "")
            if content_type == MULTIPART and self.multipart_uploads_enabled:
                self._check_preflight(request.headers)
            elif content_type != JSON:
                accepted = f"{JSON} or {MULTIPART}" if self.multipart_uploads_enabled else JSON
                raise TransportError(415, BadUserInput.code, f"Content-Type must be {accepted}.")
        request_data = await super().parse_http_body(request)
        if isinstance(request_data, GraphQLRequestData):
            document_id = await self._document_id(request)
            if document_id is not None:
                request_data = DocumentRequestData(**vars(request_data), document_id=document_id)
        return request_data

    async def _document_id(self, request: AsyncHTTPRequestAdapter) -> object:
        """The `documentId` of a persisted document request (GraphQL-over-HTTP, appendix A),
        which strawberry's parsing leaves out: a GET parameter or a member of the JSON body
        (decoded again only when the body holds the word)."""
        if request.method == "GET":
            return request.query_params.get("documentId")
        content_type, _ = parse_content_type(request.content_type or "")
        if content_type != JSON:
            return None
        body = await request.get_body()  # read once by strawberry already: Starlette keeps it
        if b"documentId" not in (body if isinstance(body, bytes) else body.encode()):
            return None
        data = self.parse_json(body)
        return data.get("documentId") if isinstance(data, dict) else None

    async def resolve_document(
        self, request: Request, context: ContextT, request_data: GraphQLRequestData
    ) -> GraphQLRequestData:
        """The request with the text of the persisted document it names, or its refusal
        (PERSISTED_QUERY_NOT_FOUND, …_NOT_IN_LIST, …_ID_REQUIRED, …_NOT_SUPPORTED, or
        BAD_USER_INPUT: api/extensions/persisted.py), before any GraphQL work."""
        try:
            resolved = await self.documents.resolve(
                DocumentRequest(
                    request_data.query,
                    getattr(request_data, "document_id", None),
                    request_data.extensions,
                ),
                context,
            )
        except GraphQLError as error:
            media_type = negotiate_media_type(request.headers.get("accept"))
            raise TransportError(
                http_status(error, self._status_of(media_type)),
                error_code(error) or BadUserInput.code,
                error.message,
            ) from None
        if resolved.query is request_data.query:
            return request_data
        return dataclasses.replace(request_data, query=resolved.query)

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """Not for a GET that names a persisted document (it has no `query` either)."""
        params = request.query_params
        return (
            super().should_render_graphql_ide(request)
            and params.get("documentId") is None
            and params.get("extensions") is None
        )

    @staticmethod
    def _check_preflight(headers: Mapping[str, str]) -> None:
        if not any(headers.get(name, "").strip() for name in PREFLIGHT_HEADERS):
            raise TransportError(
                400,
                BadUserInput.code,
                "Multipart requests need the header `Apollo-Require-Preflight: true` "
                "(or a non-empty `X-Apollo-Operation-Name`).",
            )

    def parse_json(self, data: str | bytes) -> Any:
        try:
            value = self.decode_json(data)
        except (ValueError, RecursionError) as exc:  # also bad UTF-8, absurd nesting
            raise TransportError(400, BadUserInput.code, "Malformed JSON.") from exc
        if not isinstance(value, dict | list):
            raise TransportError(400, BadUserInput.code, "Expected a JSON object.")
        return value

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = negotiate_media_type(request.headers.get("accept"))
        return sub_response

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if result.errors:
            # Last line of defence, e.g. for a schema without MaskInternalErrors.
            result.errors = [_ensure_code(error, request) for error in result.errors]
        response_data = await super().process_result(request, result)
        if _never_executed(result):
            response_data.pop("data", None)  # GraphQL spec: no `data` before execution
        return response_data

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = sub_response.media_type or JSON
        response.headers["content-type"] = media_type
        never_executed = isinstance(response_data, dict) and "data" not in response_data
        if never_executed and not sub_response.status_code:
            response.status_code = self._status_of(media_type)
        return response


def _megabytes(size: int) -> str:
    mb = size / (1024 * 1024)
    return f"{int(mb)}" if mb.is_integer() else f"{mb:.3g}"


def _ensure_code(error: GraphQLError, request: Request) -> GraphQLError:
    return error if error_code(error) else mask_error(error, _request_id(request))


def _request_id(request: Request) -> str:
    request_id = getattr(request.state, "request_id", None)
    return request_id if isinstance(request_id, str) and request_id else uuid.uuid4().hex


__all__ = [
    "GRAPHQL_RESPONSE_JSON",
    "GraphQLView",
    "TransportError",
    "json_error_response",
    "negotiate_media_type",
]
