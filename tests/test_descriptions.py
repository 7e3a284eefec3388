"""Every part of the schema a client reads is described: types, fields, arguments, input
fields, enum values (with their French label), scalars and directives — what GraphiQL,
`schema.graphql` and code generators show. The test lists every element without one.

Left out, and only these: the introspection types (`__Schema`, `__Type`…: the GraphQL
specification's, described by graphql-core) and the directives the specification defines
(`@include`, `@skip`, `@deprecated`, `@specifiedBy`, `@oneOf`: graphql-core's, described);
and the arguments of our schema directives (`@cost(weight)`, `@postOnly(reason)`…):
strawberry 0.341 builds them without a description whatever the class declares, so each
directive's own description says what its arguments mean.
Relay's `Node` and `PageInfo` and the built-in scalars are not left out: they are ours to
describe, or already described.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    build_schema,
    specified_directives,
)

from api.schema import schema, schema_sdl

# An enum value's description starts with its French label, then a dash: "Ordonnance — …".
FRENCH_LABEL = re.compile(r"^[^—]+ — \S")


def undescribed(graphql_schema: GraphQLSchema) -> list[str]:
    """Every element of `graphql_schema` without a description, as `kind Type.name(arg)`."""
    missing: list[str] = []

    def check(description: str | None, what: str) -> None:
        if not (description or "").strip():
            missing.append(what)

    for type_ in graphql_schema.type_map.values():
        if type_.name.startswith("__"):
            continue
        check(type_.description, f"type {type_.name}")
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            for name, field in type_.fields.items():
                check(field.description, f"field {type_.name}.{name}")
                for arg_name, arg in field.args.items():
                    check(arg.description, f"argument {type_.name}.{name}({arg_name})")
        elif isinstance(type_, GraphQLInputObjectType):
            for name, input_field in type_.fields.items():
                check(input_field.description, f"input field {type_.name}.{name}")
        elif isinstance(type_, GraphQLEnumType):
            for name, value in type_.values.items():
                check(value.description, f"enum value {type_.name}.{name}")
    specified = {directive.name for directive in specified_directives}
    for directive in graphql_schema.directives:
        if directive.name in specified:
            continue
        check(directive.description, f"directive @{directive.name}")
    return missing


def test_every_type_field_argument_enum_value_and_directive_is_described() -> None:
    assert undescribed(schema._schema) == []


def test_the_published_sdl_carries_the_descriptions_too() -> None:
    assert undescribed(build_schema(schema_sdl())) == []


def test_every_enum_value_gives_its_french_label() -> None:
    unlabelled = [
        f"{type_.name}.{name}: {value.description!r}"
        for type_ in schema._schema.type_map.values()
        if isinstance(type_, GraphQLEnumType) and not type_.name.startswith("__")
        for name, value in type_.values.items()
        if not FRENCH_LABEL.match(value.description or "")
    ]

    assert unlabelled == []


def test_the_prescription_category_reads_as_the_issue_asks() -> None:
    category = schema._schema.type_map["DocumentCategory"]
    assert isinstance(category, GraphQLEnumType)

    assert category.values["PRESCRIPTION"].description == "Ordonnance — a prescription."


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("DateTime", "https://scalars.graphql.org/andimarek/date-time"),
        ("Date", "https://www.rfc-editor.org/rfc/rfc3339#section-5.6"),
        ("Upload", "https://github.com/jaydenseric/graphql-multipart-request-spec"),
    ],
)
def test_custom_scalars_say_which_specification_they_follow(name: str, url: str) -> None:
    scalar = schema._schema.type_map[name]
    assert isinstance(scalar, GraphQLScalarType)

    assert scalar.specified_by_url == url
    assert f'scalar {name} @specifiedBy(url: "{url}")' in schema_sdl()


def test_a_date_time_is_answered_in_utc() -> None:
    scalar = schema._schema.type_map["DateTime"]
    assert isinstance(scalar, GraphQLScalarType)
    paris_winter = timezone(timedelta(hours=1))

    assert "Answered in UTC" in (scalar.description or "")
    assert (
        scalar.serialize(datetime(2026, 3, 14, 9, 30, tzinfo=paris_winter))
        == "2026-03-14T08:30:00+00:00"
    )
    assert scalar.serialize(datetime(2026, 3, 14, 8, 30)) == "2026-03-14T08:30:00+00:00"


def test_sizes_say_their_unit() -> None:
    for type_name in ("Document", "Attachment"):
        type_ = schema._schema.type_map[type_name]
        assert isinstance(type_, GraphQLObjectType)

        assert "bytes" in (type_.fields["size"].description or ""), type_name


# --- the check itself, on a schema of its own ----------------------------------------------

SMALL = '''
"""Described."""
type Query {
  """Described."""
  described(
    """Described."""
    a: Int
    b: Int
  ): Kind
  bare: Int
}

enum Kind {
  """Un — one."""
  ONE
  TWO
}

"""Described."""
input Filter {
  """Described."""
  x: Int
  y: Int
}

union Either = Query

"""Described."""
directive @mark(
  reason: String
) on FIELD_DEFINITION

directive @bare on FIELD_DEFINITION
'''


def test_the_check_lists_every_kind_of_undescribed_element() -> None:
    small = build_schema(SMALL)
    assert isinstance(small.type_map["Either"], GraphQLUnionType)

    assert sorted(undescribed(small)) == sorted(
        [
            "argument Query.described(b)",
            "field Query.bare",
            "type Kind",
            "enum value Kind.TWO",
            "input field Filter.y",
            "type Either",
            "directive @bare",
            # the built-in scalars graphql-core describes (Int, String, Boolean) pass
        ]
    )
