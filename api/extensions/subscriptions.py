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
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncGenerator, Iterable, Iterator
from contextlib import aclosing
from functools import lru_cache
from typing import Any

from graphql import DocumentNode, GraphQLError, OperationType, get_operation_ast, parse
from strawberry.extensions import SchemaExtension, ValidationCache
from strawberry.schema.schema import Schema, StreamResult
from strawberry.types import StreamExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType as StrawberryOperationType

from api.errors import QueryTooComplex
from api.extensions.cost import check_cost
from api.extensions.errors import MaskInternalErrors, error_code, with_code
from api.extensions.limits import MAX_TOKENS, is_parse_aborted, limits_of

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


class SubscriptionGuard(MaskInternalErrors):
    """The limits and the error masking of a subscription, with no hook held while it lives."""

    # Not hooked: strawberry would keep them open for the life of the subscription.
    on_operation = SchemaExtension.on_operation  # type: ignore[assignment]
    on_execute = SchemaExtension.on_execute  # type: ignore[assignment]

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        limits = limits_of(context.context)
        context.parse_options["max_tokens"] = limits.max_tokens
        context.validation_rules = (*context.validation_rules, *limits.rules)
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
    return [SubscriptionGuard(), ValidationCache()]


class LeanSubscriptions(Schema):
    """A schema whose subscriptions run with `subscription_extensions()` only."""

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
        # `Schema.stream` calls `get_extensions` before its first await, so the flag is
        # read in this very call; the context variable keeps concurrent calls apart anyway.
        token = _LEAN.set(is_subscription(query, operation_name))
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
        return _answered(source)

    def get_extensions(self, sync: bool = False) -> list[SchemaExtension]:
        # With custom directives (none today), the full set, which runs them.
        if not _LEAN.get() or self.directives:
            return super().get_extensions(sync)
        return subscription_extensions()


__all__ = ["LeanSubscriptions", "SubscriptionGuard", "is_subscription", "operation_type"]
