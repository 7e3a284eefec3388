"""Composes the one schema from the domain mixins, with its schema-wide extensions."""

from __future__ import annotations

import strawberry
from strawberry.printer import print_schema
from strawberry.schema.config import StrawberryConfig

from api.extensions.errors import MaskInternalErrors
from api.extensions.limits import limit_extensions
from resolvers.auth import AuthMutation
from resolvers.lifecycle import LifecycleMutation
from resolvers.node import NodeQuery
from resolvers.people import Establishment, Operator, Patient, PeopleQuery, Professional


@strawberry.type
class Query(NodeQuery, PeopleQuery):
    pass


@strawberry.type
class Mutation(LifecycleMutation, AuthMutation):
    pass


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        types=[Patient, Professional, Operator, Establishment],
        extensions=[*limit_extensions(), MaskInternalErrors],
        config=StrawberryConfig(disable_field_suggestions=True),
    )


schema = build_schema()


def schema_sdl() -> str:
    return print_schema(schema) + "\n"
