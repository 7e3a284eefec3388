"""Limits on the shape of an operation, each with a setting, refused as QUERY_TOO_COMPLEX.

- tokens (`MAX_TOKENS`): a parse option, graphql-core aborts parsing past it;
- depth, aliases and directives (`MAX_QUERY_DEPTH`, `MAX_ALIASES`, `MAX_DIRECTIVES`): one
  validation rule, which measures each fragment once however often it is spread.
  strawberry's QueryDepthLimiter and MaxAliasesLimiter walk a fragment again at every
  spread: a few hundred tokens of fragments spreading fragments twice kept them busy for
  minutes (test_cost.py has that document);
- cost (`MAX_QUERY_COST`): api/extensions/cost.py, once the document is valid.

The limits come from the settings the request's context carries (GraphQL Armor's defaults,
but a depth of 10: `patient > documents > edges > node > author > …` needs more than 6).
The rule class is made once per set of limits, so that the validation cache (keyed by the
rule classes) hits across requests.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.schema.schema import validate_document

from api.config import Settings
from api.errors import QueryTooComplex
from api.extensions.errors import with_code

MAX_DEPTH = Settings.max_query_depth
MAX_ALIASES = Settings.max_aliases
MAX_TOKENS = Settings.max_tokens
MAX_DIRECTIVES = Settings.max_directives
MAX_COST = Settings.max_query_cost

# graphql-core ends every resource-limit parse error (tokens, comments, source length,
# nesting) with this; ordinary syntax errors stay GRAPHQL_PARSE_FAILED.
_PARSE_ABORTED = "Parsing aborted."


@dataclass(frozen=True)
class Limits:
    max_depth: int = MAX_DEPTH
    max_aliases: int = MAX_ALIASES
    max_tokens: int = MAX_TOKENS
    max_directives: int = MAX_DIRECTIVES
    max_cost: int = MAX_COST

    @property
    def rules(self) -> tuple[type[ValidationRule], ...]:
        return (shape_rule(self.max_depth, self.max_aliases, self.max_directives),)


DEFAULT_LIMITS = Limits()


def limits_of(context: object) -> Limits:
    """The limits of the settings a request's context carries; the defaults without them.
    Read three times a request from the process's one (frozen) Settings: kept by its
    identity, the entry holding it so that its id is not reused."""
    settings = getattr(context, "settings", None)
    if not isinstance(settings, Settings):
        return DEFAULT_LIMITS
    known = _limits.get(id(settings))
    if known is not None and known[0] is settings:
        return known[1]
    limits = Limits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_directives=settings.max_directives,
        max_cost=settings.max_query_cost,
    )
    if len(_limits) >= 64:  # tests make settings by the hundred; a process, one
        _limits.clear()
    _limits[id(settings)] = (settings, limits)
    return limits


_limits: dict[int, tuple[Settings, Limits]] = {}


@dataclass(frozen=True)
class Shape:
    """Of a selection set, fragments expanded: the deepest level below it (its own fields
    are at 0; introspection fields are not entered, as strawberry's depth limiter does), and
    how many aliases and directives it holds."""

    depth: int = 0
    aliases: int = 0
    directives: int = 0


class _Measure:
    """The shapes of one document's selection sets, each fragment measured once."""

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.measured: dict[str, Shape] = {}
        self.measuring: set[str] = set()  # a cycle (invalid, reported by validation) counts 0

    def fragment(self, name: str) -> Shape:
        if name not in self.measured:
            fragment = self.fragments.get(name)
            if fragment is None or name in self.measuring:
                return Shape()
            self.measuring.add(name)
            try:
                shape = self.selection_set(fragment.selection_set)
            finally:
                self.measuring.discard(name)
            self.measured[name] = Shape(
                shape.depth, shape.aliases, shape.directives + len(fragment.directives or ())
            )
        return self.measured[name]

    def selection_set(self, selection_set: SelectionSetNode) -> Shape:
        depth = aliases = directives = 0
        for selection in selection_set.selections:
            directives += len(selection.directives or ())
            inner = Shape()
            if isinstance(selection, FieldNode):
                aliases += selection.alias is not None
                if selection.selection_set is not None:
                    inner = self.selection_set(selection.selection_set)
                    if not selection.name.value.startswith("__"):
                        depth = max(depth, 1 + inner.depth)
            elif isinstance(selection, InlineFragmentNode):
                inner = self.selection_set(selection.selection_set)
                depth = max(depth, inner.depth)
            elif isinstance(selection, FragmentSpreadNode):
                inner = self.fragment(selection.name.value)
                depth = max(depth, inner.depth)
            aliases += inner.aliases
            directives += inner.directives
        return Shape(depth, aliases, directives)

    def operation(self, operation: OperationDefinitionNode) -> Shape:
        shape = self.selection_set(operation.selection_set)
        own = len(operation.directives or ()) + sum(
            len(variable.directives or ()) for variable in operation.variable_definitions or ()
        )
        return Shape(shape.depth, shape.aliases, shape.directives + own)


def measure(document: DocumentNode) -> dict[str, Shape]:
    """The shape of each operation of `document`, by name ("anonymous" for the unnamed)."""
    measuring = _Measure(document)
    return {
        (d.name.value if d.name else "anonymous"): measuring.operation(d)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    }


@functools.cache
def shape_rule(max_depth: int, max_aliases: int, max_directives: int) -> type[ValidationRule]:
    """The validation rule refusing documents over these limits; one class per set of them.
    Depth is per operation; aliases and directives are counted over the document's operations,
    each fragment as often as it is spread."""

    class ShapeLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            shapes = measure(context.document)
            for name, shape in shapes.items():
                if shape.depth > max_depth:
                    self.refuse(f"'{name}' exceeds maximum operation depth of {max_depth}")
            aliases = sum(shape.aliases for shape in shapes.values())
            if aliases > max_aliases:
                self.refuse(f"{aliases} aliases found. Allowed: {max_aliases}")
            directives = sum(shape.directives for shape in shapes.values())
            if directives > max_directives:
                self.refuse(f"{directives} directives found. Allowed: {max_directives}")

        def refuse(self, message: str) -> None:
            self.report_error(with_code(GraphQLError(message), QueryTooComplex.code))

    ShapeLimit.__name__ = ShapeLimit.__qualname__ = (
        f"ShapeLimit_{max_depth}_{max_aliases}_{max_directives}"
    )
    return ShapeLimit


class OperationLimits(SchemaExtension):
    """The token limit as a parse option and the shape rule, at the request's settings."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        limits = limits_of(context.context)
        context.parse_options["max_tokens"] = limits.max_tokens
        context.validation_rules = (*context.validation_rules, *limits.rules)
        try:
            yield
        except GraphQLError as error:
            # ParserCache parses in its on_parse hook, so its errors arrive raised.
            if is_parse_aborted(error):
                raise with_code(error, QueryTooComplex.code) from None
            raise
        result = context.result
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [  # type: ignore[union-attr]
                with_code(error, QueryTooComplex.code) if is_parse_aborted(error) else error
                for error in errors
            ]


# Documents validated, as many as strawberry's ValidationCache keeps by default.
VALIDATION_CACHE_SIZE = 128

_ValidationKey = tuple[int, int, tuple[type[ASTValidationRule], ...]]
_validated: OrderedDict[_ValidationKey, tuple[GraphQLSchema, DocumentNode, list[GraphQLError]]] = (
    OrderedDict()
)
_validated_lock = threading.Lock()


def validated(
    schema: GraphQLSchema, document: DocumentNode, rules: Sequence[type[ASTValidationRule]]
) -> list[GraphQLError]:
    """The validation errors of `document`, kept by the identity of the schema and of the
    document (ParserCache hands out one document per text), and by the rules. strawberry's
    ValidationCache keys by equality: hashing a document walks its whole tree at each
    request. The entry holds the schema and the document, so neither id can be reused by
    another object while it is kept."""
    rules = tuple(rules)
    key = (id(schema), id(document), rules)
    with _validated_lock:
        entry = _validated.get(key)
        if entry is not None and entry[0] is schema and entry[1] is document:
            _validated.move_to_end(key)
            return entry[2]
    errors = validate_document(schema, document, rules)
    with _validated_lock:
        _validated[key] = (schema, document, errors)
        while len(_validated) > VALIDATION_CACHE_SIZE:
            _validated.popitem(last=False)
    return errors


class DocumentValidationCache(SchemaExtension):
    """strawberry's ValidationCache, keyed by identity (`validated`)."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        context.pre_execution_errors = validated(
            context.schema._schema, context.graphql_document, context.validation_rules
        )
        yield


def is_parse_aborted(error: GraphQLError) -> bool:
    return (
        error.path is None
        and error.original_error is None
        and error.message.startswith("Syntax Error:")
        and error.message.endswith(_PARSE_ABORTED)
    )


def limit_extensions() -> list[type[SchemaExtension] | Callable[[], SchemaExtension]]:
    """Classes, not instances: strawberry builds a fresh extension per request."""
    from api.extensions.cost import CostLimit  # it reads Limits from here

    return [OperationLimits, ParserCache, DocumentValidationCache, CostLimit]


__all__ = [
    "DEFAULT_LIMITS",
    "MAX_ALIASES",
    "MAX_COST",
    "MAX_DEPTH",
    "MAX_DIRECTIVES",
    "MAX_TOKENS",
    "DocumentValidationCache",
    "Limits",
    "OperationLimits",
    "Shape",
    "is_parse_aborted",
    "limit_extensions",
    "limits_of",
    "measure",
    "shape_rule",
    "validated",
]
