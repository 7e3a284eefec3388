"""Which POST-only fields (resolvers/post_only.py) a GET request's document selects.

The view (api/view.py) asks before a GET runs, for the text sent and for the text of the
persisted document it names. Fields are matched on their parent type, as validation does:
an alias or a fragment hides nothing, a field of another type with the same name is not
caught. A field that an interface declares counts when one of its implementations marks it.
A document that does not parse selects nothing here: the schema then answers its error.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    parse,
    visit,
)

from resolvers.post_only import PostOnly

CACHED_DOCUMENTS = 256


@dataclass(frozen=True)
class Selected:
    coordinate: str  # `Type.field`
    reason: str

    @property
    def message(self) -> str:
        return (
            f"{self.coordinate} is served over POST only: send this operation in a POST "
            f"body. {self.reason}"
        )


def _reason(field: Any) -> str | None:
    definition = (getattr(field, "extensions", None) or {}).get("strawberry-definition")
    for directive in getattr(definition, "directives", None) or ():
        if isinstance(directive, PostOnly):
            return directive.reason
    return None


def post_only_fields(schema: GraphQLSchema) -> dict[tuple[str, str], str]:
    """(type name, field name) → reason, for every POST-only field and the interface fields
    one of them implements."""
    marked: dict[tuple[str, str], str] = {}
    for type_ in schema.type_map.values():
        if isinstance(type_, GraphQLObjectType) and not type_.name.startswith("__"):
            for name, field in type_.fields.items():
                reason = _reason(field)
                if reason is not None:
                    marked[(type_.name, name)] = reason
    for type_ in schema.type_map.values():
        if isinstance(type_, GraphQLInterfaceType):
            for implementation in schema.get_possible_types(type_):
                for name in type_.fields:
                    reason = marked.get((implementation.name, name))
                    if reason is not None:
                        marked.setdefault((type_.name, name), reason)
    return marked


class PostOnlyFields:
    """The POST-only fields of one schema, and a cached check of documents against them."""

    def __init__(self, schema: GraphQLSchema | None) -> None:
        self.schema = schema
        self.marked = post_only_fields(schema) if schema is not None else {}
        self.selected = functools.lru_cache(maxsize=CACHED_DOCUMENTS)(self._selected)

    def _selected(self, query: str, max_tokens: int | None) -> Selected | None:
        """The first POST-only field `query` selects, or None."""
        if not self.marked or self.schema is None:
            return None
        try:
            document = parse(query, no_location=True, max_tokens=max_tokens)
        except GraphQLError:
            return None
        marked = self.marked
        type_info = TypeInfo(self.schema)
        found: list[Selected] = []

        class FindMarked(Visitor):
            def enter_field(self, node: FieldNode, *_: object) -> None:
                parent = type_info.get_parent_type()
                if parent is None:
                    return
                reason = marked.get((parent.name, node.name.value))
                if reason is not None and not found:
                    found.append(Selected(f"{parent.name}.{node.name.value}", reason))

        visit(document, TypeInfoVisitor(type_info, FindMarked()))
        return found[0] if found else None


__all__ = ["CACHED_DOCUMENTS", "PostOnlyFields", "Selected", "post_only_fields"]
