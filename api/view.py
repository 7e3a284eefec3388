"""The HTTP edge of GraphQL: strawberry's ASGI view made GraphQL-over-HTTP compliant.

It follows the current text of the GraphQL-over-HTTP specification
(https://github.com/graphql/graphql-over-http, spec/GraphQLOverHTTP.md):

- Media type: `application/graphql-response+json` when the client ranks it at least as high
  as `application/json`; `application/json` otherwise (an `Accept` of `application/json`,
  `*/*`, or none), as the Transport contract says. An `Accept` that allows neither (nor
  `*/*`, `application/*`) answers 406. Both carry `charset=utf-8`.
- Status codes: those of `application/graphql-response+json`, for every client (the spec
  asks that legacy clients be served "as if the request had specified
  `Accept: application/graphql-response+json`", only the media type of a 2xx differing):
  200 for a result without errors; 294 ("Partial Success") for a result with `data` and
  `errors`, under `application/graphql-response+json` only (the spec recommends it "only
  alongside the `application/graphql-response+json` media type"; `application/json` gets
  200); before execution, 400 for a body that is not JSON or a document that does not
  parse (the token limit included), 422 for a request that is not a well-formed
  GraphQL-over-HTTP request (no `query`, parameters of the wrong type), a document that
  does not validate (the depth, alias, directive and cost limits are validation rules),
  an operation that cannot be determined or variables that cannot be coerced; 401/403 for
  a refused token, 405 with `Allow` (over GET, a mutation or a document selecting a
  `@postOnly` field such as `patientByNir`: `Allow: POST`), 413, 415, 429
  with `Retry-After` (RATE_LIMITED: api/budget.py). APQ's PERSISTED_QUERY_NOT_FOUND is a
  200 (the contract's, so that clients retry with the text).
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
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import aclosing
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from cross_web import AsyncHTTPRequestAdapter, FormData, HTTPException, StarletteRequestAdapter
from graphql import GraphQLError
from graphql import OperationType as GraphQLOperationType
from starlette import datastructures
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, GraphQLRequestProtocol
from strawberry.http.parse_content_type import parse_content_type
from strawberry.schema._graphql_core import GraphQLIncrementalExecutionResults
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from api.budget import retry_after_of
from api.encoding import encode_answer
from api.errors import (
    BadUserInput,
    Forbidden,
    InternalError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    from_domain,
    unavailable,
)
from api.extensions.errors import PARSE_FAILED, VALIDATION_FAILED, error_code, mask_error
from api.extensions.limits import is_parse_aborted, limits_of
from api.extensions.persisted import DocumentRegistry, DocumentRequest, http_status
from api.extensions.post_only import PostOnlyFields
from api.extensions.subscriptions import operation_type
from api.security_headers import graphiql_csp
from api.ws_operations import LegacyWSHandler, TransportWSHandler
from models.errors import DomainError

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send
    from strawberry.http.base import BaseRequestProtocol
    from strawberry.http.ides import GraphQL_IDE
    from strawberry.http.types import QueryParams
    from strawberry.schema import BaseSchema

logger = logging.getLogger(__name__)

ContextT = TypeVar("ContextT")
RootT = TypeVar("RootT")

JSON = "application/json"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
MULTIPART = "multipart/form-data"

PREFLIGHT_HEADERS = ("apollo-require-preflight", "x-apollo-operation-name")
# A GET's optional parameters: the empty string is the parameter left out.
OPTIONAL_GET_PARAMETERS = frozenset({"operationName", "variables", "extensions", "documentId"})

# Status codes (GraphQL-over-HTTP, "Status Codes").
PARTIAL_SUCCESS = 294  # a result with `data` and `errors`, under graphql-response+json
UNPARSABLE = 400  # a body that is not JSON, a document that does not parse
UNPROCESSABLE = 422  # not a well-formed request, not valid, no operation, bad variables
_STATUS_OF_CODE = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "RATE_LIMITED": 429}


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


@lru_cache(maxsize=64)
def negotiate_media_type(accept: str | None) -> str:
    """graphql-response+json if the client ranks it at least as high as plain JSON (clients
    send a handful of distinct headers: kept)."""
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


@lru_cache(maxsize=64)
def acceptable(accept: str | None) -> bool:
    """Whether an `Accept` header allows one of our media types (no header allows any)."""
    if accept is None or not accept.strip():
        return True
    for item in accept.split(","):
        media_range, _, params = item.strip().partition(";")
        if media_range.strip().lower() not in (GRAPHQL_RESPONSE_JSON, JSON, "application/*", "*/*"):
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


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
        # Fields never served over GET (resolvers/post_only.py): their arguments stay out of URLs.
        self.post_only = PostOnlyFields(getattr(schema, "_schema", None))

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

    @overload
    async def run(
        self,
        request: Request,
        context: ContextT | UnsetType = UNSET,
        root_value: RootT | UnsetType | None = UNSET,
    ) -> Response: ...

    @overload
    async def run(
        self,
        request: WebSocket,
        context: ContextT | UnsetType = UNSET,
        root_value: RootT | UnsetType | None = UNSET,
    ) -> WebSocket: ...

    async def run(
        self,
        request: Request | WebSocket,
        context: ContextT | UnsetType = UNSET,
        root_value: RootT | UnsetType | None = UNSET,
    ) -> Response | WebSocket:
        """strawberry's (`AsyncBaseHTTPView.run` of strawberry-graphql 0.341.2, the version
        pyproject.toml pins), a plain result told apart by its class first. strawberry asks
        first whether the result is a subscription's stream, a check against a runtime
        Protocol that walks the result's class with `inspect.getattr_static`: ~54,000
        instructions, 0.5 % of a dossier read. A websocket: strawberry's."""
        if self.is_websocket_request(request):
            return await super().run(request, context, root_value)  # type: ignore[arg-type]
        request = cast("Request", request)
        root_value = await self.get_root_value(request) if root_value is UNSET else root_value
        request_adapter = self.request_adapter_class(request)
        sub_response = await self.get_sub_response(request)
        if context is UNSET:
            context = await self.get_context(request, response=sub_response)
        if not self.is_request_allowed(request_adapter):
            raise HTTPException(405, "GraphQL only supports GET and POST requests.")
        if self.should_render_graphql_ide(request_adapter):
            if self.graphql_ide:
                return await self.render_graphql_ide(request)
            raise HTTPException(404, "Not Found")
        try:
            request_data = await self.parse_http_body(request_adapter)
        except json.JSONDecodeError as e:
            raise HTTPException(400, "Unable to parse request body as JSON") from e
        except KeyError as e:
            raise HTTPException(400, "File(s) missing in form data") from e
        result = await self.execute_operation(
            request=request,
            request_adapter=request_adapter,
            request_data=request_data,
            context=context,  # type: ignore[arg-type]
            root_value=root_value,  # type: ignore[arg-type]
            sub_response=sub_response,
        )
        if not isinstance(result, ExecutionResult | list):
            return await self._streamed(request, request_data, result, sub_response)
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse]
        if isinstance(result, list):
            response_data = []
            for execution_result in result:
                processed_result = await self.process_result(
                    request=request, result=execution_result
                )
                if execution_result.errors:
                    self._handle_errors(execution_result.errors, processed_result)
                response_data.append(processed_result)
        else:
            response_data = await self.process_result(request=request, result=result)
            if result.errors:
                self._handle_errors(result.errors, response_data)
        return self.create_response(response_data=response_data, sub_response=sub_response)

    async def _streamed(
        self,
        request: Request,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        result: Any,
        sub_response: Response,
    ) -> Response:
        """The rest of strawberry's `run`: a subscription's stream, or incremental delivery."""
        if isinstance(result, SubscriptionExecutionResult):
            assert isinstance(request_data, GraphQLRequestData)
            return await self._create_streaming_response(
                request=request,
                result=result,
                protocol=request_data.protocol,
                sub_response=sub_response,
            )
        assert isinstance(result, GraphQLIncrementalExecutionResults)
        multipart_transport = self.multipart_transport_class()

        async def data() -> AsyncGenerator[object, None]:
            all_pending: list[Any] = []
            response, all_pending = await self._process_stream_result(
                request, result.initial_result, all_pending
            )
            yield response
            async for value in result.subsequent_results:
                response, all_pending = await self._process_stream_result(
                    request, value, all_pending
                )
                yield response

        return await self.create_streaming_response(
            request,
            multipart_transport.stream(data, self.encode_json_string),
            sub_response,
            headers=multipart_transport.headers,
        )

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
            content_type = response.headers.get("content-type", "")
            if content_type in (JSON, GRAPHQL_RESPONSE_JSON):
                response.headers["content-type"] = f"{content_type}; charset=utf-8"
            await response(scope, receive, send)
        finally:
            await request.close()  # uploaded files spooled to disk

    async def _respond(self, request: Request) -> Response:
        accept = request.headers.get("accept")
        media_type = negotiate_media_type(accept)
        if not acceptable(accept) and not self._asks_for_ide(request):
            return json_error_response(
                406,
                BadUserInput.code,
                f"This endpoint answers {GRAPHQL_RESPONSE_JSON} or {JSON}: accept one of them.",
            )
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
            code = error_code(error) or ""
            status = _STATUS_OF_CODE.get(code, error.http_status)
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
            retry_after = retry_after_of([error.formatted])
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            return Response(
                self.encode_json({"errors": [error.formatted]}),
                status_code=status if status >= 400 else UNPROCESSABLE,
                headers=headers,
                media_type=media_type,
            )
        except Exception as exc:
            down = unavailable(exc)  # get_context's session lookup, with the database down
            if down is not None:
                logger.warning("dependency unreachable: %r", exc)
                return json_error_response(
                    503,
                    down.code,
                    down.message,
                    extensions={"retryAfter": down.retry_after},
                    headers={"Retry-After": str(down.retry_after)},
                )
            request_id = _request_id(request)
            logger.error(
                "Unhandled error in GraphQL view (request_id=%s)", request_id, exc_info=exc
            )
            return json_error_response(  # no GraphQL response: not graphql-response+json
                500,
                InternalError.code,
                InternalError.default_message,
                extensions={"requestId": request_id},
            )

    def _too_large(self, media_type: str) -> JSONResponse:
        return json_error_response(
            413,
            PayloadTooLarge.code,
            f"Request body larger than {self.max_body_bytes} bytes.",
            media_type=media_type,
        )

    @staticmethod
    def _asks_for_ide(request: Request) -> bool:
        """A browser's GET of the page (GraphiQL in development, else a 404)."""
        params = request.query_params
        return (
            request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
            and not any(params.get(name) for name in ("query", "documentId", "extensions"))
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL, with a Content-Security-Policy of its own (api/security_headers.py)."""
        html = self.graphql_ide_html
        csp = graphiql_csp(html, request.url.netloc)
        return HTMLResponse(html, headers={"Content-Security-Policy": csp})

    def _http_exception_response(
        self, exc: HTTPException, method: str, media_type: str
    ) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, CannotGetOperationTypeError):
            # Unknown or ambiguous operation name: the operation cannot be determined.
            return json_error_response(
                UNPROCESSABLE, VALIDATION_FAILED, exc.reason, media_type=media_type
            )
        if (
            isinstance(cause, InvalidOperationTypeError)
            and cause.operation_type is not OperationType.SUBSCRIPTION
            and method == "GET"
        ):
            return json_error_response(
                405, BadUserInput.code, exc.reason, headers={"Allow": "POST"}, media_type=media_type
            )
        if isinstance(cause, MissingQueryError):  # not a well-formed GraphQL-over-HTTP request
            return json_error_response(
                UNPROCESSABLE,
                BadUserInput.code,
                "The request has no GraphQL query.",
                media_type=media_type,
            )
        if exc.status_code == 400 and exc.reason.startswith(_MALFORMED_PARAMETERS):
            # strawberry's checks of the parameters' types, and a JSON array (a batch).
            return json_error_response(
                UNPROCESSABLE, BadUserInput.code, exc.reason, media_type=media_type
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
        if request_adapter.method == "GET":  # before an APQ text is registered
            self._refuse_post_only(request_data.query, context)
            _refuse_apq_mutation(request_data)
        request_data = await self.resolve_document(request, context, request_data)
        if request_adapter.method == "GET":  # the persisted document it names
            self._refuse_post_only(request_data.query, context)
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
        finally:
            self.operation_finished(context)

    def operation_finished(self, context: ContextT) -> None:
        """Called once an HTTP operation has run (or failed), before its answer is made:
        release what the context holds for the operation only. By default, nothing."""

    def _refuse_post_only(self, query: str | None, context: ContextT) -> None:
        """A GET whose document selects a `@postOnly` field: 405, as a mutation over GET."""
        if query is None:
            return
        selected = self.post_only.selected(query, limits_of(context).max_tokens)
        if selected is not None:
            raise TransportError(405, BadUserInput.code, selected.message, {"Allow": "POST"})

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """strawberry's, refusing what it lets through: a POST that is neither JSON nor a
        multipart upload (415), an `operationName` that is not a string (422)."""
        request_data: GraphQLRequestData | list[GraphQLRequestData]
        content_type = _media_type(request.content_type or "") if request.method == "POST" else ""
        if content_type == JSON:
            request_data = self._parse_json_request(request.headers, await request.get_body())
        else:
            if request.method == "POST":
                if content_type == MULTIPART and self.multipart_uploads_enabled:
                    self._check_preflight(request.headers)
                else:
                    accepted = f"{JSON} or {MULTIPART}" if self.multipart_uploads_enabled else JSON
                    raise TransportError(
                        415, BadUserInput.code, f"Content-Type must be {accepted}."
                    )
            request_data = await super().parse_http_body(request)
        if isinstance(request_data, GraphQLRequestData) and not isinstance(
            request_data.operation_name, str | None
        ):
            raise TransportError(
                UNPROCESSABLE,
                BadUserInput.code,
                "The GraphQL operation's `operationName` must be a string or null, if provided.",
            )
        if isinstance(request_data, GraphQLRequestData):
            document_id = await self._document_id(request)
            if document_id is not None:
                request_data = DocumentRequestData(**vars(request_data), document_id=document_id)
        return request_data

    def _parse_json_request(
        self, headers: Mapping[str, str], body: str | bytes
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """strawberry's parsing of a JSON POST (`AsyncBaseHTTPView.parse_http_body` of
        strawberry-graphql 0.341.2, the version pyproject.toml pins), without its second
        reading of the Content-Type through the email package (slow, and already read)."""
        transport = self._get_stream_transport_from_headers(headers)
        protocol: GraphQLRequestProtocol = transport.protocol if transport else "http"
        data = self.parse_json(body)
        if isinstance(data, list):
            self._validate_batch_request(data, protocol=protocol)
            return [
                GraphQLRequestData(
                    query=item.get("query"),
                    variables=item.get("variables"),
                    operation_name=item.get("operationName"),
                    extensions=item.get("extensions"),
                    protocol=protocol,
                )
                for item in data
            ]
        for name, expected, what in _REQUEST_PARAMETERS:
            if not isinstance(data.get(name), expected):
                raise HTTPException(
                    400, f"The GraphQL operation's `{name}` must be {what} or null, if provided."
                )
        return GraphQLRequestData(
            query=data.get("query"),
            variables=data.get("variables"),
            operation_name=data.get("operationName"),
            extensions=data.get("extensions"),
            protocol=protocol,
        )

    async def _document_id(self, request: AsyncHTTPRequestAdapter) -> object:
        """The `documentId` of a persisted document request (GraphQL-over-HTTP, appendix A),
        which strawberry's parsing leaves out: a GET parameter or a member of the JSON body
        (decoded again only when the body holds the word)."""
        if request.method == "GET":
            return request.query_params.get("documentId") or None  # "": left out
        if _media_type(request.content_type or "") != JSON:
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
            raise TransportError(
                # A document id that cannot be served: 400 (GraphQL-over-HTTP's RFC on
                # persisted operations: "400 or 404"); PERSISTED_QUERY_NOT_FOUND: 200.
                http_status(error, UNPARSABLE),
                error_code(error) or BadUserInput.code,
                error.message,
            ) from None
        if resolved.query is request_data.query:
            return request_data
        return dataclasses.replace(request_data, query=resolved.query)

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """Not for a GET that names a persisted document (it has no `query` either)."""
        if not super().should_render_graphql_ide(request):
            return False  # a POST's query string is never parsed
        params = request.query_params
        return params.get("documentId") is None and params.get("extensions") is None

    @staticmethod
    def _check_preflight(headers: Mapping[str, str]) -> None:
        if not any(headers.get(name, "").strip() for name in PREFLIGHT_HEADERS):
            raise TransportError(
                400,
                BadUserInput.code,
                "Multipart requests need the header `Apollo-Require-Preflight: true` "
                "(or a non-empty `X-Apollo-Operation-Name`).",
            )

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        """The parameters of a GET (GraphQL-over-HTTP, "GET"): "Specifying the empty string
        for optional request parameters is equivalent to not specifying them at all", and
        `variables` and `extensions` are JSON (one that is not makes the request not
        well-formed: 422; a JSON `null` is the parameter left out)."""
        parsed: dict[str, Any] = {}
        for name, text in dict(params).items():
            if text == "" and name in OPTIONAL_GET_PARAMETERS:
                continue
            value: Any = text
            if name in ("variables", "extensions") and text is not None:
                try:
                    value = self.decode_json(text)
                except (ValueError, RecursionError) as exc:
                    raise TransportError(
                        UNPROCESSABLE,
                        BadUserInput.code,
                        f"The GraphQL operation's `{name}` parameter must be JSON.",
                    ) from exc
                if value is None:
                    continue
            parsed[name] = value
        return parsed

    def encode_json(self, data: object) -> str:
        """A websocket's frames, a stream's events and a few error bodies: compact JSON by
        orjson (`encode_answer`), as HTTP answers are, rather than strawberry's
        `json.dumps` (~1.5 % of a message's delivery). Text, for the text frames of the
        GraphQL websocket protocols and the lines of an event stream."""
        return encode_answer(data).decode()

    def parse_json(self, data: str | bytes) -> Any:
        try:
            value = self.decode_json(data)
        except (ValueError, RecursionError) as exc:  # also bad UTF-8, absurd nesting
            raise TransportError(400, BadUserInput.code, "Malformed JSON.") from exc
        if not isinstance(value, dict | list):  # JSON, but not a GraphQL-over-HTTP request
            raise TransportError(UNPROCESSABLE, BadUserInput.code, "Expected a JSON object.")
        return value

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """What resolvers may set on the answer (`info.context.response`: a status, headers,
        a background task), as strawberry's: no status (None), no header, no body, the
        media type negotiated. Built without `Response.__init__`, which renders an empty
        body and writes a content-length and a content-type only to have them deleted."""
        sub_response = _SubResponse(negotiate_media_type(request.headers.get("accept")))
        request.state.graphql_sub_response = sub_response  # for process_result's status
        return sub_response

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if result.errors:
            # Last line of defence, e.g. for a schema without MaskInternalErrors.
            result.errors = [_ensure_code(error, request) for error in result.errors]
        response_data = await super().process_result(request, result)
        never_executed = _never_executed(result)
        if never_executed:
            response_data.pop("data", None)  # GraphQL spec: no `data` before execution
        sub_response = getattr(request.state, "graphql_sub_response", None)
        if isinstance(sub_response, Response) and not sub_response.status_code:
            # (a resolver may have chosen a status itself: it is kept)
            unavailable_for = _unavailable_retry_after(response_data.get("errors") or [])
            if unavailable_for is not None:  # a dependency is down (api/errors.py): 503
                sub_response.status_code = 503
                sub_response.headers["Retry-After"] = str(unavailable_for)
            elif never_executed:
                sub_response.status_code = _never_executed_status(result.errors or [])
                retry_after = retry_after_of(response_data.get("errors") or [])  # type: ignore[arg-type]
                if retry_after is not None:
                    sub_response.headers["Retry-After"] = str(retry_after)
            elif result.errors and sub_response.media_type == GRAPHQL_RESPONSE_JSON:
                sub_response.status_code = PARTIAL_SUCCESS
        return response_data

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        """strawberry's, the answer encoded by orjson (`encode_answer`)."""
        response = Response(
            encode_answer(response_data),
            status_code=sub_response.status_code or 200,
            media_type=JSON,
        )
        response.headers.raw.extend(sub_response.headers.raw)
        response.headers["content-type"] = sub_response.media_type or JSON
        if sub_response.background:
            response.background = sub_response.background
        return response


class _SubResponse(Response):
    """strawberry's sub-response (`GraphQL.get_sub_response`: `Response()`, its status set
    to None, its content-length deleted), made directly."""

    def __init__(self, media_type: str) -> None:  # Response.__init__ is not called
        self.status_code = None  # type: ignore[assignment]  # strawberry's "not chosen"
        self.media_type = media_type
        self.background = None
        self.body = b""
        self.raw_headers = []


def _refuse_apq_mutation(request_data: GraphQLRequestData) -> None:
    """A GET that would register a mutation's text by APQ: 405 before it is registered (a
    GET changes nothing, and the mutation would be refused right after anyway)."""
    extensions = request_data.extensions
    if (
        request_data.query is not None
        and isinstance(extensions, Mapping)
        and extensions.get("persistedQuery") is not None
        and operation_type(request_data.query, request_data.operation_name)
        is GraphQLOperationType.MUTATION
    ):
        raise TransportError(
            405, BadUserInput.code, "mutations are not allowed when using GET", {"Allow": "POST"}
        )


# The parameters of a request strawberry checks the type of, in its order, with its words.
_REQUEST_PARAMETERS = (
    ("query", str | None, "a string"),
    ("variables", dict | None, "an object"),
    ("extensions", dict | None, "an object"),
)

# strawberry's reasons for a request whose parameters have the wrong type, or a batch.
_MALFORMED_PARAMETERS = ("The GraphQL operation's", "Batching is not enabled")


@lru_cache(maxsize=64)
def _media_type(content_type: str) -> str:
    """The media type of a Content-Type header (`parse_content_type`, through the email
    package, is slow; clients send a handful of distinct values)."""
    return parse_content_type(content_type)[0]


def _unavailable_retry_after(errors: Iterable[object]) -> int | None:
    """The `retryAfter` of the first SERVICE_UNAVAILABLE error among formatted `errors`."""
    for error in errors:
        extensions = error.get("extensions") if isinstance(error, Mapping) else None
        if isinstance(extensions, Mapping) and extensions.get("code") == ServiceUnavailable.code:
            value = extensions.get("retryAfter")
            return value if isinstance(value, int) else 5
    return None


def _never_executed_status(errors: Sequence[GraphQLError]) -> int:
    """The status of a request that never executed, from its errors (GraphQL-over-HTTP)."""
    codes = {error_code(error) for error in errors}
    for code, status in (("INTERNAL_SERVER_ERROR", 500), ("SERVICE_UNAVAILABLE", 503)):
        if code in codes:
            return status
    for code, status in _STATUS_OF_CODE.items():
        if code in codes:
            return status
    if PARSE_FAILED in codes or any(is_parse_aborted(error) for error in errors):
        return UNPARSABLE
    return UNPROCESSABLE


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
    "PARTIAL_SUCCESS",
    "GraphQLView",
    "TransportError",
    "acceptable",
    "json_error_response",
    "negotiate_media_type",
]
