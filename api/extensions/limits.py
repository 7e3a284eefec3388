"""Operation limits at GraphQL Armor's defaults, with errors coded QUERY_TOO_COMPLEX.

Strawberry's limiters report plain GraphQLErrors; these wrappers add the code. The
validation rules are built once, here, rather than per request by the limiter factories,
so that ValidationCache (keyed by the rule classes) hits across requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

from graphql import GraphQLError, ValidationContext, ValidationRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from api.errors import QueryTooComplex
from api.extensions.errors import with_code

# patient > documents > edges > node > author > ... needs more than Armor's 6.
MAX_DEPTH = 10
MAX_ALIASES = 15
MAX_TOKENS = 1000

# graphql-core ends every resource-limit parse error (tokens, comments, source length,
# nesting) with this; ordinary syntax errors stay GRAPHQL_PARSE_FAILED.
_PARSE_ABORTED = "Parsing aborted."


def _coded_rule(rule: type[ValidationRule]) -> type[ValidationRule]:
    """`rule`, with every error it reports coded QUERY_TOO_COMPLEX."""

    def __init__(self: ValidationRule, context: ValidationContext) -> None:
        report = context.on_error

        def report_coded(error: GraphQLError) -> None:
            report(with_code(error, QueryTooComplex.code))

        context.on_error = report_coded  # type: ignore[method-assign]
        try:
            rule.__init__(self, context)
        finally:
            context.on_error = report  # type: ignore[method-assign]

    return cast(
        "type[ValidationRule]", type(f"Coded{rule.__name__}", (rule,), {"__init__": __init__})
    )


def _only_rule(extension: AddValidationRules) -> type[ValidationRule]:
    (rule,) = extension.validation_rules
    return _coded_rule(cast("type[ValidationRule]", rule))


DEPTH_RULE = _only_rule(QueryDepthLimiter(max_depth=MAX_DEPTH))
ALIASES_RULE = _only_rule(MaxAliasesLimiter(max_alias_count=MAX_ALIASES))


class DepthLimit(AddValidationRules):
    def __init__(self) -> None:
        super().__init__([DEPTH_RULE])


class AliasLimit(AddValidationRules):
    def __init__(self) -> None:
        super().__init__([ALIASES_RULE])


class TokenLimit(MaxTokensLimiter):
    def __init__(self) -> None:
        super().__init__(max_token_count=MAX_TOKENS)

    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = self.max_token_count
        try:
            yield
        except GraphQLError as error:
            # ParserCache parses in its on_parse hook, so its errors arrive raised.
            if is_parse_aborted(error):
                raise with_code(error, QueryTooComplex.code) from None
            raise
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [  # type: ignore[union-attr]
                with_code(error, QueryTooComplex.code) if is_parse_aborted(error) else error
                for error in errors
            ]


def is_parse_aborted(error: GraphQLError) -> bool:
    return (
        error.path is None
        and error.original_error is None
        and error.message.startswith("Syntax Error:")
        and error.message.endswith(_PARSE_ABORTED)
    )


def limit_extensions() -> list[type[SchemaExtension] | Callable[[], SchemaExtension]]:
    """Classes, not instances: strawberry builds a fresh extension per request."""
    return [DepthLimit, AliasLimit, TokenLimit, ParserCache, ValidationCache]


__all__ = [
    "ALIASES_RULE",
    "DEPTH_RULE",
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_TOKENS",
    "is_parse_aborted",
    "limit_extensions",
]
