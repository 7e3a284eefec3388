"""Plans and their cache: which fields of a document are read without graphql-core's
per-field dispatch (api/plans/__init__.py says when that is exact)."""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    print_schema,
)
from strawberry.types.field import StrawberryField

PLAN_ENTRIES = 1024  # documents whose plans are kept, least recently used out first
PLAN_FIELDS = 4096  # (field node, object type) decisions kept per document, at most

# strawberry's resolver of a field without resolver, extensions or exception handlers
# (strawberry/schema/schema_converter.py, `from_resolver`): `field.get_result(source)`,
# its info ignored.
_BASIC_RESOLVER = "_get_basic_result"


class TypeName:
    """The reader of `__typename`: the name of the object type the field is read on."""


TYPENAME = TypeName()


@dataclass(frozen=True, slots=True)
class LeafReader:
    """A basic field of a scalar or enum type: strawberry's own resolver of it, its
    graphql-core definition (for the fallback) and its leaf type's serialiser."""

    resolve: Callable[..., Any]
    field: GraphQLField
    coerce: Callable[[Any], Any]
    attribute: str | None  # read with getattr: what strawberry's default resolver does


Reader = LeafReader | TypeName


def leaf_reader(parent_type: GraphQLObjectType, field_name: str) -> Reader | None:
    """The reader of a field of an object type, or None: graphql-core executes it."""
    if field_name == "__typename":
        return TYPENAME
    field = parent_type.fields.get(field_name)
    if field is None or field.args:
        return None
    resolve = field.resolve
    if (
        resolve is None
        or getattr(resolve, "__name__", None) != _BASIC_RESOLVER
        or getattr(resolve, "_is_default", None) is not True
    ):
        return None
    definition = (field.extensions or {}).get("strawberry-definition")
    if definition is None or not getattr(definition, "is_basic_field", False):
        return None
    named = field.type.of_type if is_non_null_type(field.type) else field.type
    if is_list_type(named) or not is_leaf_type(named):
        return None
    leaf: GraphQLLeafType = named
    attribute = None
    if (
        type(definition).get_result is StrawberryField.get_result
        and definition.default_resolver is getattr
        and definition.base_resolver is None
    ):
        attribute = definition.python_name
    return LeafReader(
        resolve=resolve, field=field, coerce=leaf.coerce_output_value, attribute=attribute
    )


_FINGERPRINTS: weakref.WeakKeyDictionary[GraphQLSchema, str] = weakref.WeakKeyDictionary()


def schema_fingerprint(schema: GraphQLSchema) -> str:
    """The SHA-256 of the schema's SDL and of which of its fields a plan may read: a schema
    changed by a deployment has another one, be it only a resolver or a permission added
    to a field (the SDL alone would not show that)."""
    fingerprint = _FINGERPRINTS.get(schema)
    if fingerprint is None:
        digest = hashlib.sha256(print_schema(schema).encode())
        for name, named_type in sorted(schema.type_map.items()):
            if isinstance(named_type, GraphQLObjectType):
                for field_name in named_type.fields:
                    reader = leaf_reader(named_type, field_name)
                    kind = type(reader).__name__ if reader else "-"
                    digest.update(f"\n{name}.{field_name}:{kind}".encode())
        fingerprint = digest.hexdigest()
        _FINGERPRINTS[schema] = fingerprint
    return fingerprint


class DocumentPlan:
    """The readers of one document's fields, decided on first use per (field node, object
    type) and kept with the document. A decision is keyed by the node's identity and kept
    with the node itself, so that it is never taken for another node at a reused address."""

    __slots__ = ("_readers", "fingerprint", "operation", "schema", "sha256")

    def __init__(
        self,
        schema: GraphQLSchema,
        fingerprint: str,
        sha256: str,
        operation: OperationDefinitionNode,
    ) -> None:
        self.schema = schema
        self.fingerprint = fingerprint
        self.sha256 = sha256
        self.operation = operation
        self._readers: dict[tuple[int, str], tuple[Any, Reader | None]] = {}

    def reader(self, parent_type: GraphQLObjectType, node: Any) -> Reader | None:
        key = (id(node), parent_type.name)
        entry = self._readers.get(key)
        if entry is not None and entry[0] is node:  # the node itself, not a reused id
            return entry[1]
        reader = leaf_reader(parent_type, node.name.value)
        if len(self._readers) < PLAN_FIELDS:
            self._readers[key] = (node, reader)
        return reader

    def __len__(self) -> int:
        return len(self._readers)


def document_text(operation: OperationDefinitionNode) -> str | None:
    """The full text of the document an operation was parsed from (None without locations)."""
    loc = operation.loc
    return loc.source.body if loc is not None else None


class PlanCache:
    """Plans by (schema fingerprint, SHA-256 of the document's full text), least recently
    used out first. A plan is reused only for the very schema object and parsed document it
    was built for (strawberry's ParserCache gives the same parse to the same text); a
    different one under the same key (a re-parse, a rebuilt schema) replaces it."""

    def __init__(self, max_entries: int = PLAN_ENTRIES) -> None:
        self.max_entries = max_entries
        self._plans: OrderedDict[tuple[str, str], DocumentPlan] = OrderedDict()
        self.built = 0  # plans built, for tests and the benchmark

    def __len__(self) -> int:
        return len(self._plans)

    def clear(self) -> None:
        self._plans.clear()

    def plan_for(
        self, schema: GraphQLSchema, operation: OperationDefinitionNode
    ) -> DocumentPlan | None:
        text = document_text(operation)
        if text is None:
            return None
        fingerprint = schema_fingerprint(schema)
        key = (fingerprint, hashlib.sha256(text.encode()).hexdigest())
        plan = self._plans.get(key)
        if plan is not None and plan.schema is schema and _same_document(plan, operation):
            self._plans.move_to_end(key)
            return plan
        plan = DocumentPlan(schema, fingerprint, key[1], operation)
        self.built += 1
        self._plans[key] = plan
        self._plans.move_to_end(key)
        while len(self._plans) > self.max_entries:
            self._plans.popitem(last=False)
        return plan


def _same_document(plan: DocumentPlan, operation: OperationDefinitionNode) -> bool:
    """Whether `operation` belongs to the parsed document the plan was built on (the
    document may hold several operations: any of them shares its nodes' identities)."""
    if plan.operation is operation:
        return True
    mine, theirs = plan.operation.loc, operation.loc
    return mine is not None and theirs is not None and mine.source is theirs.source


PLANS = PlanCache()
