"""Refuse text that holds a NUL character, in any argument, before anything runs.

PostgreSQL cannot store U+0000 in text: a NUL in a message, a title or a search term made
asyncpg raise and the answer an internal error (found by fuzzing the live schema), while
SQLite stored it. No name, text or identifier of the domain has one, so on every backend a
NUL in a String or ID input, given literally or in a variable, is BAD_USER_INPUT naming that
input (as the variable errors do: the field inside an input object, else the argument or
variable), and the operation does not run.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    ObjectFieldNode,
    StringValueNode,
    VariableDefinitionNode,
)
from graphql.language import Visitor, visit
from strawberry.extensions import SchemaExtension

from api.errors import BadUserInput

NUL = "\x00"
MESSAGE = "Text cannot contain a NUL character."


class RefuseNulCharacters(SchemaExtension):
    """After validation (the document is well formed), before execution."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        found = _in_variables(context.variables or {})
        if found is None and context.graphql_document is not None:
            found = _in_document(context.graphql_document)
        if found is not None:
            raise BadUserInput(MESSAGE, field=found or None)
        yield


def _in_variables(variables: Mapping[str, Any]) -> str | None:
    """The input holding a NUL ("" when it has no name), None when there is none."""
    for name, value in variables.items():
        path = _path_to_nul(value)
        if path is not None:
            return ".".join(path) or name
    return None


def _path_to_nul(value: Any) -> list[str] | None:
    """The keys leading to a string with a NUL inside `value` (list items are not named)."""
    if isinstance(value, str):
        return [] if NUL in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            path = _path_to_nul(item)
            if path is not None:
                return [str(key), *path]
    elif isinstance(value, list | tuple):
        for item in value:
            path = _path_to_nul(item)
            if path is not None:
                return path
    return None


# What `_in_document` found in each document, by identity (a document is parsed once per
# text and cached by ParserCache: each request would otherwise walk the same tree again).
# The weak reference tells a document apart from a later one given the same id().
_FOUND: dict[int, tuple[weakref.ref[DocumentNode], str | None]] = {}


def _in_document(document: DocumentNode) -> str | None:
    """As `_in_variables`, for the string literals of the document."""
    known = _FOUND.get(id(document))
    if known is not None and known[0]() is document:
        return known[1]
    finder = _NulFinder()
    visit(document, finder)
    if len(_FOUND) >= 1024:
        _FOUND.clear()
    _FOUND[id(document)] = (weakref.ref(document), finder.found)
    return finder.found


class _NulFinder(Visitor):
    """The first string literal with a NUL: an argument's or a variable's default value."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.found: str | None = None

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        self.names.append(node.name.value)

    def leave_argument(self, node: ArgumentNode, *_: Any) -> None:
        self.names.pop()

    def enter_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> None:
        self.names.append(node.variable.name.value)

    def leave_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> None:
        self.names.pop()

    def enter_object_field(self, node: ObjectFieldNode, *_: Any) -> None:
        self.names.append(node.name.value)

    def leave_object_field(self, node: ObjectFieldNode, *_: Any) -> None:
        self.names.pop()

    def enter_string_value(self, node: StringValueNode, *_: Any) -> Any:
        if self.found is None and NUL in node.value:
            # Inside an input object, the field's path; else the argument or variable.
            self.found = ".".join(self.names[1:]) or ".".join(self.names[:1])
        return None


__all__ = ["MESSAGE", "RefuseNulCharacters"]
