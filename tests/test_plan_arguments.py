"""Plans convert arguments as strawberry's `convert_argument` does (api/plans/arguments.py),
on every argument of the schema, for values with every input field given, only the
required ones, and the nullable ones null."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import pytest
import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import StrawberryArgument, convert_argument

from api.plans.arguments import conversion
from api.schema import schema

SCALARS: dict[str, Any] = {
    "String": "texte",
    "ID": "UGF0aWVudDoxMjM=",
    "Int": 3,
    "Float": 1.5,
    "Boolean": True,
    "Date": date(2024, 1, 2),
    "DateTime": datetime(2024, 1, 2, 3, 4, tzinfo=UTC),
}


def samples(type_: GraphQLInputType, depth: int = 0) -> list[Any]:
    """Values of this type as graphql-core hands them to resolvers once coerced."""
    if isinstance(type_, GraphQLNonNull):
        return samples(type_.of_type, depth)
    nullable = [None]
    if isinstance(type_, GraphQLList):
        return [[item, item] for item in samples(type_.of_type, depth)[:1]] + [[]] + nullable
    if isinstance(type_, GraphQLEnumType):
        return [next(iter(type_.values.values())).value, *nullable]
    if isinstance(type_, GraphQLScalarType):
        return [SCALARS.get(type_.name, object()), *nullable]
    assert isinstance(type_, GraphQLInputObjectType)
    if depth > 3:
        return nullable
    every = {name: samples(field.type, depth + 1)[0] for name, field in type_.fields.items()}
    required = {
        name: value
        for name, value in every.items()
        if isinstance(type_.fields[name].type, GraphQLNonNull)
    }
    nulls = {
        **required,
        **{name: None for name in every if name not in required},
    }
    return [every, required, nulls, *nullable]


def arguments() -> list[tuple[str, StrawberryArgument, GraphQLInputType]]:
    found = []
    for type_ in schema._schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if definition is None:
                continue
            names = schema.config.name_converter
            for argument_name, graphql_argument in field.args.items():
                argument = next(
                    a for a in definition.arguments if names.from_argument(a) == argument_name
                )
                found.append(
                    (f"{type_.name}.{name}({argument_name})", argument, graphql_argument.type)
                )
    return found


def strawberrys(argument: StrawberryArgument, value: Any) -> Any:
    registry = schema.schema_converter.scalar_registry
    return convert_argument(value, argument.type, registry, schema.config, None, path=("a",))


def test_every_argument_of_the_schema_converts_as_strawberry_converts_it() -> None:
    registry = schema.schema_converter.scalar_registry
    compiled = 0
    checked = 0
    for where, argument, graphql_type in arguments():
        convert = conversion(argument.type, registry, schema.config)
        if convert is not None and not (
            isinstance(convert, partial) and convert.func is convert_argument
        ):
            compiled += 1
        for value in samples(graphql_type):
            expected = strawberrys(argument, value)
            got = value if convert is None else convert(value, info=None, path=("a",))
            assert got == expected, where
            assert type(got) is type(expected), where
            checked += 1
    # the schema's input types (sendMessage's input among them) are decided once
    assert compiled >= 20, compiled
    assert checked > 250, checked


def test_send_message_input_is_converted_without_strawberrys_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from resolvers.messaging import SendMessageInput

    registry = schema.schema_converter.scalar_registry
    convert = conversion(SendMessageInput, registry, schema.config)
    assert convert is not None
    walked: list[Any] = []

    def walk(*args: Any, **kwargs: Any) -> Any:
        walked.append(args)
        raise AssertionError("strawberry's convert_argument called")

    monkeypatch.setattr("strawberry.types.arguments.convert_argument", walk)
    value = convert({"conversationId": "Q29udjox", "body": "Bonjour"}, info=None, path=("a",))
    assert value == SendMessageInput(conversation_id="Q29udjox", body="Bonjour")  # type: ignore[call-arg]
    assert value.attachments is None and walked == []


@strawberry.input
class Tree:
    label: str
    children: list[Tree] | None = None


@strawberry.input
class Wrapper:
    tree: Tree
    tags: list[str] = strawberry.field(default_factory=list)


def test_an_input_type_that_holds_itself_is_left_to_strawberry() -> None:
    registry = schema.schema_converter.scalar_registry
    convert = conversion(Wrapper, registry, schema.config)
    assert isinstance(convert, partial) and convert.func is convert_argument
    value = {"tree": {"label": "a", "children": [{"label": "b"}]}}
    assert convert(value, info=None, path=("a",)) == Wrapper(
        tree=Tree(label="a", children=[Tree(label="b")])
    )


def test_a_list_of_scalars_is_copied_as_strawberry_copies_it() -> None:
    registry = schema.schema_converter.scalar_registry

    @strawberry.input
    class Tags:
        tags: list[str]

    convert = conversion(Tags, registry, schema.config)
    assert isinstance(convert, partial) and convert.func is not convert_argument
    default = ["a"]
    value = convert({"tags": default}, info=None, path=("a",))
    assert value == Tags(tags=["a"]) and value.tags is not default
