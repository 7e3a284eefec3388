"""Operations on the GraphQL websocket: each one re-authorised, on a context of its own.

strawberry builds one context per socket (`get_context` at the handshake) and hands that
same object to every operation sent over it. Here, for both protocols (graphql-transport-ws
and the legacy graphql-ws), each `subscribe`/`start` first asks the view for a context of
its own (`GraphQLView.operation_context`), which re-checks the socket's session against the
database exactly as an HTTP request's token is checked, and gives the operation its own
clock, loaders, audit trail and request id. Then:

- **A session revoked or expired** (logout, closed space, end of its lifetime) refuses the
  operation with UNAUTHENTICATED and closes the socket with 4401, so the client knows to
  authenticate again; the legacy protocol also gets a `connection_error` first. A
  subscription that finds its session ended at a delivery (`Context.session_alive`) closes
  the socket the same way. A token refused at `connection_init` (unknown, revoked or
  expired) closes with 4403 on both protocols (strawberry's legacy handler would close
  with 1011, a server error; the legacy protocol gets its `connection_error` first).
- **Queries and mutations are refused** with BAD_USER_INPUT: the websocket carries
  subscriptions only. Reads and writes go through `POST /graphql` (or GET for queries), the
  one path with every HTTP control (body and media-type limits, response headers, and
  whatever the HTTP edge gains later), where each request is authenticated and each read
  logged.
  Mirrors HTTP, which refuses subscriptions. GraphiQL and urql's subscription exchange
  send only subscriptions over the socket, and so does the usual Apollo split link.

An idle subscription holds its operation's context (slotted, with the socket's own `Actor`
object when re-authentication finds it unchanged): about 0.1-0.2 KB more traced heap per
idle subscription than with the shared context (~33 KB), measured in process with 300.
Nor does an idle socket keep the last message it read (strawberry's read loop would hold
it: cleared once handled), the finished connection-init timeout task, or an empty dict of
named documents (tests/test_idle_memory.py).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError
from graphql import OperationType as DocumentOperation
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    CompleteMessage as TransportComplete,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    CompleteMessage as LegacyComplete,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ErrorMessage as LegacyError,
)
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UnsetType

from api.budget import charge_operation, charge_operation_cost
from api.errors import BadUserInput, Unauthenticated
from api.extensions.persisted import DocumentRequest
from api.extensions.subscriptions import operation_type

if TYPE_CHECKING:
    from api.view import GraphQLView

SUBSCRIPTIONS_ONLY = (OperationType.SUBSCRIPTION,)
SUBSCRIPTIONS_ONLY_MESSAGE = (
    "The websocket carries subscriptions only: send queries and mutations to POST /graphql."
)
SESSION_ENDED_CLOSE = 4401
TOKEN_REFUSED_CLOSE = 4403  # at connection_init: graphql-transport-ws's code, for both
SESSION_ENDED_MESSAGE = "The session is invalid or has expired."


class SessionEnded(Exception):
    """The socket's session was revoked or has expired (raised by `operation_context`)."""

    def __init__(self, error: GraphQLError | None = None) -> None:
        self.error = error or Unauthenticated(SESSION_ENDED_MESSAGE)
        super().__init__(self.error.message)


def refusal(query: str | None, operation_name: str | None) -> GraphQLError | None:
    """BAD_USER_INPUT for a query or a mutation; None for anything else (a subscription, or
    a document the schema reports on itself: parse and validation errors)."""
    kind = operation_type(query, operation_name)
    if kind is None or kind is DocumentOperation.SUBSCRIPTION:
        return None
    return BadUserInput(SUBSCRIPTIONS_ONLY_MESSAGE)


def _names_a_document(payload: object) -> bool:
    """A subscribe payload that names a persisted document (`documentId`, or
    `extensions.persistedQuery` for APQ), which may then come without a `query`."""
    return isinstance(payload, dict) and (
        "documentId" in payload or isinstance(payload.get("extensions"), dict)
    )


class _PersistedDocuments:
    """The persisted document each operation of a socket names, from its subscribe message
    to its run, where `GraphQLView.documents` resolves it (api/extensions/persisted.py)."""

    view: GraphQLView[Any, Any]
    _named_documents: dict[str, DocumentRequest]  # made on the first document named

    def _named(self) -> dict[str, DocumentRequest]:
        named: dict[str, DocumentRequest] | None = getattr(self, "_named_documents", None)
        if named is None:
            named = {}
            self._named_documents = named
        return named

    def _unname(self, operation_id: str) -> DocumentRequest | None:
        """Forgets what `operation_id` named (no dict made for a socket that never names)."""
        # getattr, not `self.__dict__`: that would make the instance a dict of its own.
        named: dict[str, DocumentRequest] | None = getattr(self, "_named_documents", None)
        return None if named is None else named.pop(operation_id, None)

    def _name(self, operation_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Keeps what `payload` names; the payload strawberry's handler may then read."""
        self._named()[operation_id] = DocumentRequest(
            None, payload.get("documentId"), payload.get("extensions")
        )
        return payload if "query" in payload else {**payload, "query": None}

    async def _document(self, operation_id: str, query: str | None, context: Any) -> str:
        """The text an operation runs: its query, or the persisted document it names
        (a GraphQLError when refused, PERSISTED_QUERY_NOT_FOUND and the like)."""
        named = self._unname(operation_id) or DocumentRequest(None)
        resolved = await self.view.documents.resolve(
            DocumentRequest(query, named.document_id, named.extensions), context
        )
        if resolved.query is None:
            raise BadUserInput("The operation has no query.")
        return resolved.query


class TransportWSHandler(_PersistedDocuments, BaseGraphQLTransportWSHandler[Any, Any]):
    """graphql-transport-ws: strawberry's handler, with each operation on its own context."""

    view: GraphQLView[Any, Any]
    _ending = False

    async def handle_subscribe(self, message: Any) -> None:
        """strawberry's, for a payload that names a persisted document as well."""
        payload = message.get("payload")
        if not _names_a_document(payload):
            await super().handle_subscribe(message)
            return
        operation_id = message["id"]
        before = self.operations.get(operation_id)
        named = {**message, "payload": self._name(operation_id, payload)}
        await super().handle_subscribe(named)  # type: ignore[arg-type]
        if self.operations.get(operation_id) in (None, before):  # refused: nothing to run
            self._unname(operation_id)

    async def cleanup_operation(self, operation_id: str) -> None:
        self._unname(operation_id)
        await super().cleanup_operation(operation_id)

    async def handle_message(self, message: Any) -> None:
        await super().handle_message(message)
        # strawberry's `handle` loop keeps the last message it read (for a subscription, the
        # subscribe message and its payload) in its frame while the socket idles: nothing
        # reads it once handled (the operation has its own query and variables).
        if isinstance(message, dict):
            message.clear()

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        # The init timeout is over (cancelled above, or it closed the socket): not kept
        # for the socket's life (a Task and its callbacks, ~0.3 KB).
        task = self.connection_init_timeout_task
        if task is not None and (task.done() or task.cancelling()):
            self.connection_init_timeout_task = None

    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        try:
            try:
                context = await self.view.operation_context(self.context)
            except SessionEnded as ended:
                self._unname(operation.id)
                await operation.send_initial_errors([ended.error])
                await self._end_session(operation.id)
                return
            try:
                await charge_operation(context)  # the request budget: api/budget.py
                operation.query = await self._document(operation.id, operation.query, context)
            except GraphQLError as error:
                self._unname(operation.id)
                await operation.send_initial_errors([error])
                return
            refused = refusal(operation.query, operation.operation_name)
            if refused is not None:
                await operation.send_initial_errors([refused])
                return
            try:
                await charge_operation_cost(
                    context,
                    self.schema,
                    operation.query,
                    operation.operation_name,
                    operation.variables,
                )
            except GraphQLError as error:
                await operation.send_initial_errors([error])
                return
            result_source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
                allowed_operation_types=SUBSCRIPTIONS_ONLY,
            )
            try:
                await self._send_result_stream(operation, result_source)
            finally:
                # strawberry's `aclosing`, without its context manager held for the
                # subscription's life (~0.35 KB): a failing close is not the operation's.
                with suppress(Exception):
                    await result_source.aclose()
            if self.view.session_ended(context):
                await self._end_session(operation.id)
                return
            await operation.send_operation_message(
                TransportComplete(id=operation.id, type="complete")
            )
        except _OperationStreamClosed:
            return
        except Exception as error:  # as strawberry's: logged, completed, forgotten
            await self.handle_task_exception(error)
            with suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise

    async def _end_session(self, current: str) -> None:
        """Stops the socket's other operations and closes it (4401), once."""
        if self._ending:
            return
        self._ending = True
        self.operations.pop(current, None)
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        await self.websocket.close(code=SESSION_ENDED_CLOSE, reason=SESSION_ENDED_MESSAGE)


class LegacyWSHandler(_PersistedDocuments, BaseGraphQLWSHandler[Any, Any]):
    """The legacy graphql-ws: strawberry's handler, with each operation on its own context."""

    view: GraphQLView[Any, Any]
    _ending = False

    async def handle_start(self, message: Any) -> None:
        """strawberry's, for a payload that names a persisted document as well."""
        payload = message.get("payload")
        if not _names_a_document(payload):
            await super().handle_start(message)
            return
        operation_id = message["id"]
        if operation_id in self.tasks:  # as strawberry's handler would, before it is named
            await self.cleanup_operation(operation_id)
        named = {**message, "payload": self._name(operation_id, payload)}
        await super().handle_start(named)  # type: ignore[arg-type]
        if operation_id not in self.tasks:  # refused: nothing to run
            self._unname(operation_id)

    async def cleanup_operation(self, operation_id: str) -> None:
        self._unname(operation_id)
        await super().cleanup_operation(operation_id)

    async def handle_connection_init(self, message: Any) -> None:
        """strawberry's, but a token refused here (unknown, revoked or expired) closes the
        socket with 4403 after the protocol's `connection_error`, as graphql-transport-ws
        does, rather than with 1011 (a server error, which clients retry as such)."""
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            await self.send_message({"type": "connection_error"})
            await self.websocket.close(code=1000, reason="")
            return
        self.context.connection_params = payload
        try:
            acknowledged = await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError as rejected:
            await self.send_message({"type": "connection_error", "payload": rejected.payload})
            await self.websocket.close(code=TOKEN_REFUSED_CLOSE, reason="Forbidden")
            return
        if isinstance(acknowledged, UnsetType) or acknowledged is None:
            await self.send_message({"type": "connection_ack"})
        else:
            await self.send_message({"type": "connection_ack", "payload": acknowledged})
        self.connection_acknowledged = True
        if self.keep_alive:
            self.keep_alive_task = asyncio.create_task(self.handle_keep_alive())

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        try:
            try:
                context = await self.view.operation_context(self.context)
            except SessionEnded as ended:
                self._unname(operation_id)
                await self._send_error(operation_id, ended.error)
                await self._end_session(operation_id)
                return
            try:
                await charge_operation(context)  # the request budget: api/budget.py
                query = await self._document(operation_id, query, context)
            except GraphQLError as error:
                self._unname(operation_id)
                await self._send_error(operation_id, error)
                return
            refused = refusal(query, operation_name)
            if refused is not None:
                await self._send_error(operation_id, refused)
                return
            try:
                await charge_operation_cost(context, self.schema, query, operation_name, variables)
            except GraphQLError as error:
                await self._send_error(operation_id, error)
                return
            result_source = await self.schema.subscribe(
                query=query,
                variable_values=variables,
                operation_name=operation_name,
                context_value=context,
                root_value=self.root_value,
            )
            self.subscriptions[operation_id] = result_source
            is_first_result = True
            async for result in result_source:
                if is_first_result and isinstance(result, PreExecutionError):
                    assert result.errors
                    await self._send_error(operation_id, result.errors[0])
                    return
                await self.send_data_message(result, operation_id)
                is_first_result = False
            if self.view.session_ended(context):
                await self._end_session(operation_id)
                return
            await self.send_message(LegacyComplete(type="complete", id=operation_id))
        except asyncio.CancelledError:  # stopped by the client, as strawberry's
            await self.send_message(LegacyComplete(type="complete", id=operation_id))
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)

    async def _send_error(self, operation_id: str, error: GraphQLError) -> None:
        await self.send_message(LegacyError(type="error", id=operation_id, payload=error.formatted))

    async def _end_session(self, current: str) -> None:
        """Stops the socket's other operations, answers `connection_error` (the protocol's
        only connection-level error) and closes the socket (4401), once."""
        if self._ending:
            return
        self._ending = True
        self.tasks.pop(current, None)
        self.subscriptions.pop(current, None)
        for operation_id in list(self.tasks):
            await self.cleanup_operation(operation_id)
        await self.send_message(
            {
                "type": "connection_error",
                "payload": {"code": Unauthenticated.code, "message": SESSION_ENDED_MESSAGE},
            }
        )
        await self.websocket.close(code=SESSION_ENDED_CLOSE, reason=SESSION_ENDED_MESSAGE)


__all__ = [
    "SESSION_ENDED_CLOSE",
    "SUBSCRIPTIONS_ONLY_MESSAGE",
    "TOKEN_REFUSED_CLOSE",
    "LegacyWSHandler",
    "SessionEnded",
    "TransportWSHandler",
    "refusal",
]
