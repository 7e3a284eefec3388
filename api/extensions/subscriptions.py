"""Subscriptions run with one light extension instead of the per-operation set.

Strawberry keeps a subscription's `on_operation` and `on_execute` hooks open for as long as
the socket lives: with error masking and the three limits, that is about 4 KB of context
managers and suspended generators per idle subscription (bench/FANOUT.md). A subscription
document gets, instead, `SubscriptionGuard`, which gives exactly the same guarantees from
hooks that are left before the stream starts:

- the same limits: the token limit as a parse option and the shape rule (depth, aliases,
  directives) added to the validation rules, as OperationLimits does, and the cost checked
  once the document is valid, as CostLimit does (all coded QUERY_TOO_COMPLEX);
- the same error masking: every result of a stream, pre-execution errors included, goes
  through `on_stream_result`, which codes or masks each error as MaskInternalErrors does.
  Its `on_operation` only mattered for exceptions escaping the stream, which cannot happen
  here: the document was parsed (below), and strawberry turns every later failure into a
  result.

Queries and mutations keep the full extension set (they run over HTTP only: the websocket
refuses them, api/ws_operations.py).

Such a subscription also runs on `_subscription_stream` rather than strawberry's stream, for
what it holds while it waits for events (most of its life): strawberry's stream maps events
through graphql-core's `subscribe`, whose mapping keeps the subscription's executor (its
variables, fragments, caches of collected fields and plans, incremental-delivery maps:
~5 KB), the last event and its result, and the operation and execution phases entered;
this stream builds each event's executor afresh from the same arguments, as graphql-core
builds its per-event copies, and keeps none of them between events (bench/FANOUT.md).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Iterator
from contextlib import aclosing
from functools import lru_cache
from inspect import isawaitable
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationType,
    create_source_event_stream,
    execute_subscription_event,
    get_operation_ast,
    parse,
)
from graphql import __version__ as graphql_version
from graphql.execution import Executor
from graphql.execution.async_iterables import aclosing as closing_events
from graphql.execution.executor_throwing_on_incremental import ExecutorThrowingOnIncremental
from graphql.execution.middleware import MiddlewareManager
from graphql.validation import ASTValidationRule
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension, ValidationCache
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import (
    Schema,
    StreamResult,
    _coerce_error,
    _coerce_pre_execution_error,
)
from strawberry.types import ExecutionContext, StreamExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType as StrawberryOperationType

from api.errors import QueryTooComplex
from api.extensions.cost import check_cost
from api.extensions.errors import MaskInternalErrors, error_code, with_code
from api.extensions.limits import MAX_TOKENS, is_parse_aborted, limits_of
from api.plans import PLANS, PlannedExecutor, plans_enabled
from api.plans.executor import SUPPORTED_GRAPHQL_CORE

_LEAN: contextvars.ContextVar[bool] = contextvars.ContextVar("lean_subscription", default=False)


@lru_cache(maxsize=256)
def _parse(query: str, max_tokens: int = MAX_TOKENS) -> DocumentNode:
    # Under the token limit, as every parse: a document over it is left to the full path.
    return parse(query, max_tokens=max_tokens)


def operation_type(query: str | None, operation_name: str | None) -> OperationType | None:
    """The type of a document's chosen operation; None if it does not parse (within the
    token limit) or names no single operation (errors the full path reports)."""
    if not query:
        return None
    try:
        document = _parse(query)
    except GraphQLError:
        return None
    operation = get_operation_ast(document, operation_name)
    return None if operation is None else operation.operation


def is_subscription(query: str | None, operation_name: str | None) -> bool:
    """True for a document that parses, whose chosen operation is a subscription."""
    return operation_type(query, operation_name) is OperationType.SUBSCRIPTION


@lru_cache(maxsize=64)
def _with_rules(
    rules: tuple[type[ASTValidationRule], ...], added: tuple[type[ASTValidationRule], ...]
) -> tuple[type[ASTValidationRule], ...]:
    # One tuple per set of limits, not one per subscription (kept by its execution context).
    return (*rules, *added)


class SubscriptionGuard(MaskInternalErrors):
    """The limits and the error masking of a subscription, with no hook held while it lives."""

    # Not hooked: strawberry would keep them open for the life of the subscription.
    on_operation = SchemaExtension.on_operation  # type: ignore[assignment]
    on_execute = SchemaExtension.on_execute  # type: ignore[assignment]

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        limits = limits_of(context.context)
        context.parse_options["max_tokens"] = limits.max_tokens
        context.validation_rules = _with_rules(tuple(context.validation_rules), limits.rules)
        # On failure strawberry parses again and reports the error as a result (coded below).
        with contextlib.suppress(GraphQLError):
            if context.query:
                context.graphql_document = _parse(context.query, limits.max_tokens)
        yield

    def on_validate(self) -> Iterator[None]:
        yield
        check_cost(self.execution_context)  # raises QUERY_TOO_COMPLEX, answered by _answered
        # What `on_execute` told MaskInternalErrors: from here on, errors are execution's.
        self._executing = not self.execution_context.pre_execution_errors

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [  # type: ignore[union-attr]
                with_code(error, QueryTooComplex.code) if is_parse_aborted(error) else error
                for error in errors
            ]
        yield from super().on_stream_result(result)


async def _answered(source: StreamResult) -> AsyncGenerator[Any, None]:
    """The stream, with a coded error that escapes it before its first result (a document
    that does not parse: the parser cache raises from its hook) answered as the error it is,
    where strawberry's websocket handlers would drop it and answer nothing."""
    first = True
    async with aclosing(source):
        try:
            async for result in source:
                first = False
                yield result
        except GraphQLError as error:
            if not first or error_code(error) is None:
                raise
            yield PreExecutionError(data=None, errors=[error])


def subscription_extensions() -> list[SchemaExtension]:
    """Neither hooks `on_operation` nor `on_execute`: `_subscription_stream` enters neither
    phase (tests/test_subscription_stream.py)."""
    return [SubscriptionGuard(), ValidationCache()]


def _event_executor(
    schema: Schema,
    context: ExecutionContext,
    root_value: Any,
    middleware: MiddlewareManager,
    executor_class: type[Executor[Any]] | None,
    operation_extensions: dict[str, Any] | None,
) -> Executor[Any] | ExecutionResult:
    """The executor graphql-core's `subscribe` builds for the operation (with `root_value`),
    or the result of its request errors."""
    assert context.graphql_document is not None
    executor = (executor_class or ExecutorThrowingOnIncremental).build(
        schema._schema,
        context.graphql_document,
        root_value,
        context.context,
        context.variables,
        context.operation_name,
        middleware=middleware,
        operation_extensions=operation_extensions,
    )
    return ExecutionResult(None, errors=executor) if isinstance(executor, list) else executor


def _planned(executor: Executor[Any]) -> Executor[Any]:
    """An event's executor following its document's plan, as a query's does: the plans
    leave subscriptions out (a document's root field is its source stream, read by graphql-
    core's `subscribe`), but an event is executed as a query of the event: its root field
    (strawberry's resolver returning the event) has no reader and runs as graphql-core's,
    the fields below it as planned, under the very conditions `PlannedExecutor` sets
    (its graphql-core, COMPILED_PLANS, no middleware). Relies on `PlannedExecutor._plan`:
    tests/test_s2_planned_events.py."""
    if (
        isinstance(executor, PlannedExecutor)
        and graphql_version.startswith(SUPPORTED_GRAPHQL_CORE)
        and executor._plan is None
        and plans_enabled(executor.context_value)
        and not (executor.middleware_manager and executor.middleware_manager.middlewares)
    ):
        executor._plan = PLANS.plan_for(executor.schema, executor.operation)
    return executor


async def _source_stream(
    schema: Schema,
    context: ExecutionContext,
    middleware: MiddlewareManager,
    executor_class: type[Executor[Any]] | None,
    operation_extensions: dict[str, Any] | None,
) -> AsyncIterable[Any] | ExecutionResult:
    """The subscription's source stream (its resolver's), or the result of its errors, as
    graphql-core's `subscribe` makes it; the executor is not kept."""
    executor = _event_executor(
        schema, context, context.root_value, middleware, executor_class, operation_extensions
    )
    if isinstance(executor, ExecutionResult):
        return executor
    if executor.operation.operation is not OperationType.SUBSCRIPTION:
        raise GraphQLError("Expected subscription operation.")
    source = create_source_event_stream(executor)
    return await source if isawaitable(source) else source


async def _event_result(
    schema: Schema,
    context: ExecutionContext,
    event: Any,
    middleware: MiddlewareManager,
    executor_class: type[Executor[Any]] | None,
    operation_extensions: dict[str, Any] | None,
) -> ExecutionResult:
    """graphql-core's `execute_subscription_event` of `event`, by an executor of its own."""
    executor = _event_executor(
        schema, context, event, middleware, executor_class, operation_extensions
    )
    if isinstance(executor, ExecutionResult):  # as the subscription's own: never
        return executor
    result = execute_subscription_event(_planned(executor))
    return await result if isawaitable(result) else result


async def _subscription_stream(
    schema: Schema,
    context: ExecutionContext,
    runner: SchemaExtensionsRunner,
    middleware: MiddlewareManager,
    executor_class: type[Executor[Any]] | None,
    operation_extensions: dict[str, Any] | None,
) -> StreamResult:
    """strawberry's `Schema._stream` for a subscription with the light extension set, which
    hooks neither the operation nor its execution: their phases are not entered. Its events
    are mapped as graphql-core's `subscribe` maps them (`map_source_to_response_event`), by
    an executor of the event's own, built as the subscription's was with the event as root
    value, instead of a copy of the subscription's executor kept for its whole life; and
    nothing of an event is kept once its result is sent. The source stream is the resolver's
    (subscriptions/schema.py), which keeps no executor either."""
    try:
        initial_error = await schema._prepare_operation_async(context, runner)
    except (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError) as error:
        initial_error = PreExecutionError(data=None, errors=[_coerce_pre_execution_error(error)])
    except GraphQLError as error:
        # A coded error of a hook (the cost limit): the answer, before any result, where
        # strawberry's websocket handlers would drop it and answer nothing.
        if error_code(error) is None:
            raise
        yield PreExecutionError(data=None, errors=[error])
        return
    if initial_error:
        initial_error.extensions = await runner.get_extensions_results(context)
        result = await schema._handle_execution_result(context, initial_error, runner)
        async with runner.on_stream_result(result):
            yield result
        return
    try:
        source = await _source_stream(
            schema, context, middleware, executor_class, operation_extensions
        )
        if isinstance(source, ExecutionResult):
            result = await schema._handle_execution_result(
                context, PreExecutionError(data=None, errors=source.errors), runner
            )
            async with runner.on_stream_result(result):
                yield result
            return
        try:
            # As graphql-core's mapping: closed at the end, quietly.
            async with closing_events(aiter(source)) as events:
                async for event in events:
                    raw = await _event_result(
                        schema, context, event, middleware, executor_class, operation_extensions
                    )
                    result = await schema._handle_execution_result(context, raw, runner)
                    # Neither the event nor its result is kept while waiting for the next
                    # one: nothing reads them again.
                    del event, raw
                    if result.errors:
                        async with runner.on_stream_result(result):
                            yield result
                    else:  # the light set's one hook of a result reads its errors alone
                        yield result
                    del result
                    context.result = None
        # graphql-core doesn't handle exceptions raised while executing.
        except Exception as exc:
            result = await schema._handle_execution_result(
                context, ExecutionResult(None, errors=[_coerce_error(exc)]), runner
            )
            async with runner.on_stream_result(result):
                yield result
    except Exception as exc:
        result = await schema._handle_execution_result(
            context, ExecutionResult(None, errors=[_coerce_error(exc)]), runner
        )
        async with runner.on_stream_result(result):
            yield result


class LeanSubscriptions(Schema):
    """A schema whose subscriptions run with `subscription_extensions()` only, on
    `_subscription_stream`."""

    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Iterable[StrawberryOperationType] | None = None,
    ) -> StreamResult:
        # `Schema.stream` calls `get_extensions` and `_stream` before its first await, so
        # the flag is read in this very call; the context variable keeps concurrent calls
        # apart anyway.
        lean = is_subscription(query, operation_name)
        token = _LEAN.set(lean)
        try:
            source = await super().stream(
                query,
                variable_values=variable_values,
                context_value=context_value,
                root_value=root_value,
                operation_name=operation_name,
                operation_extensions=operation_extensions,
                allowed_operation_types=allowed_operation_types,
            )
        finally:
            _LEAN.reset(token)
        # `_subscription_stream` answers a coded hook error itself.
        return source if lean and not self.directives else _answered(source)

    def _is_lean(self) -> bool:
        # With custom directives (none today), the full set, which runs them.
        return _LEAN.get() and not self.directives

    def get_extensions(self, sync: bool = False) -> list[SchemaExtension]:
        return subscription_extensions() if self._is_lean() else super().get_extensions(sync)

    def _stream(
        self,
        execution_context: ExecutionContext,
        extensions_runner: SchemaExtensionsRunner,
        middleware_manager: MiddlewareManager,
        execution_context_class: type[Executor[Any]] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> StreamResult:
        if not self._is_lean():
            return super()._stream(
                execution_context,
                extensions_runner,
                middleware_manager,
                execution_context_class,
                operation_extensions,
            )
        return _subscription_stream(
            self,
            execution_context,
            extensions_runner,
            middleware_manager,
            execution_context_class,
            operation_extensions,
        )


__all__ = ["LeanSubscriptions", "SubscriptionGuard", "is_subscription", "operation_type"]
