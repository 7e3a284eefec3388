"""The plan's reading of asynchronous fields with arguments (api/plans/executor.py,
`_call_async`) answers exactly as strawberry's wrapper under graphql-core.

A toy schema whose asynchronous fields take arguments of every kind strawberry converts
(scalars, enums, lists, input objects, GlobalID, `Maybe`, defaults, variables, literals),
are guarded by permissions (asynchronous, synchronous, reading the arguments, refusing,
silent, raising, answering something that is not a bool) and by an extension around them
(as RecordsRead is), raise, answer null where the type says non-null, or a value their
leaf type refuses, is executed with the plans on and off. Data, errors (messages, paths,
locations, codes) and the log of every call the resolvers, permissions and extensions made,
in order, must be identical; and the plans must have read those fields.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import strawberry
from graphql import parse
from graphql.pyutils import AbortController
from strawberry.extensions.field_extension import AsyncExtensionResolver, FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.relay import GlobalID

from api.plans import PLANS, PlannedExecutor
from api.plans.plan import AsyncResolverReader, LeafReader
from tests.conftest import _settings

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Context:
    settings: Any
    log: list[str] = field(default_factory=list)


@strawberry.enum
class Colour(Enum):
    RED = "red"
    GREEN = "green"


@strawberry.input
class Filter:
    prefix: str | None = None
    colours: list[Colour] | None = None


class NotRex(BasePermission):
    message = "Rex's secrets are his."
    error_extensions = {"code": "FORBIDDEN"}

    async def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        info.context.log.append(f"NotRex {source.name} {sorted(kwargs)}")
        await asyncio.sleep(0)
        return bool(source.name != "rex")


class UnderLimit(BasePermission):
    message = "Too many."
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        info.context.log.append(f"UnderLimit {source.name} {kwargs.get('limit')}")
        return bool(kwargs.get("limit", 0) < 13)


class Vague(BasePermission):
    async def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> Any:
        return "perhaps"


class Broken(BasePermission):
    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        raise ValueError("the rule itself failed")


class Recorded(FieldExtension):
    """Around the permission, as RecordsRead: runs after a granted read only."""

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: strawberry.Info, **kwargs: Any
    ) -> Any:
        result = await next_(source, info, **kwargs)
        await asyncio.sleep(0)
        info.context.log.append(f"recorded {source.name} {info.path.key}")
        return result


class Elsewhere(FieldExtension):
    """Passes another source down the chain (the resolver's `self` stays the field's)."""

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: strawberry.Info, **kwargs: Any
    ) -> Any:
        return await next_(Pet(name="elsewhere", colour=Colour.RED), info, **kwargs)


def _guard(*permissions: BasePermission, fail_silently: bool = False) -> list[FieldExtension]:
    return [PermissionExtension(permissions=list(permissions), fail_silently=fail_silently)]


@strawberry.type
class Pet:
    name: str
    colour: Colour

    @strawberry.field
    async def greeting(self, info: strawberry.Info, polite: bool = False, times: int = 1) -> str:
        info.context.log.append(f"greeting {self.name}")
        await asyncio.sleep(0)
        word = "Good day" if polite else "hi"
        return " ".join([word] * times) + f", {self.name}"

    @strawberry.field(extensions=[*_guard(NotRex()), Recorded()])
    async def secret(self, info: strawberry.Info, limit: int | None = None) -> str | None:
        info.context.log.append(f"secret {self.name} {limit}")
        return f"{self.name} hides {limit}"

    @strawberry.field(extensions=_guard(NotRex(), fail_silently=True))
    async def hint(self) -> str | None:
        return f"{self.name} likes the garden"

    @strawberry.field(extensions=_guard(UnderLimit(), NotRex()))
    async def both(self, limit: int = 0) -> int | None:
        return limit * 2

    @strawberry.field(extensions=_guard(Vague()))
    async def vague(self) -> str | None:
        return "never"

    @strawberry.field(extensions=_guard(Broken()))
    async def broken_rule(self) -> str | None:
        return "never"

    @strawberry.field
    async def friends(
        self, info: strawberry.Info, filter: Filter | None = None, first: int = 2
    ) -> list[Pet]:
        info.context.log.append(f"friends {self.name} {filter} {first}")
        pets = [Pet(name=f"{self.name}-{n}", colour=Colour.GREEN) for n in range(first)]
        if filter is not None and filter.prefix is not None:
            pets = [pet for pet in pets if pet.name.startswith(filter.prefix)]
        if filter is not None and filter.colours is not None:
            pets = [pet for pet in pets if pet.colour in filter.colours]
        return pets

    @strawberry.field
    async def found(self, id: GlobalID | None = None) -> str | None:
        return None if id is None else f"{id.type_name}:{id.node_id}"

    @strawberry.field
    async def paint(self, colour: Colour, colours: list[Colour] | None = None) -> Colour:
        return colours[-1] if colours else colour

    @strawberry.field
    async def note(self, text: strawberry.Maybe[str | None] = None) -> str:
        return repr(text)

    @strawberry.field
    async def owner(self, root: Pet, info: strawberry.Info) -> str:
        return f"{root.name}'s owner ({info.field_name})"

    @strawberry.field(extensions=[Elsewhere()])
    async def whose(self, root: Pet, suffix: str = "") -> str:
        return f"{self.name}/{root.name}{suffix}"

    @strawberry.field
    async def fails(self) -> str | None:
        raise ValueError(f"{self.name} cannot")

    @strawberry.field
    async def strict(self) -> str:
        return None  # type: ignore[return-value]  # a null non-null leaf

    @strawberry.field
    async def wrong_colour(self) -> Colour:
        return "purple"  # type: ignore[return-value]  # not a member


class Denied(BasePermission):
    message = "Not for you."
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Query:
    @strawberry.field
    async def pet(self, info: strawberry.Info, name: str) -> Pet | None:
        info.context.log.append(f"pet {name}")
        await asyncio.sleep(0)
        return None if name == "nobody" else Pet(name=name, colour=Colour.RED)

    @strawberry.field
    async def pets(self, names: list[str]) -> list[Pet | None]:
        return [Pet(name=name, colour=Colour.RED) for name in names]

    @strawberry.field(extensions=_guard(Denied()))
    async def closed(self, name: str = "x") -> str | None:
        return name


DOCUMENTS = (
    "query($name: String!) { pet(name: $name) { name colour greeting(polite: true, times: 2) "
    "secret(limit: 3) hint both(limit: 4) } }",
    '{ pets(names: ["rex", "fido"]) { name secret hint both(limit: 14) vague brokenRule '
    "greeting } }",
    'query($f: Filter, $n: Int!) { pet(name: "fido") { friends(filter: $f, first: $n) '
    "{ name colour secret(limit: $n) friends { name } } } }",
    '{ pet(name: "fido") { a: friends(filter: {prefix: "fido-1"}) { name } '
    "b: friends(filter: {colours: [RED]}) { name } c: friends(first: 0) { name } } }",
    '{ pet(name: "fido") { found(id: "UGV0OjE=") none: found paint(colour: GREEN) '
    'many: paint(colour: RED, colours: [GREEN, RED]) note set: note(text: "x") '
    'unset: note(text: null) owner whose other: whose(suffix: "!") } }',
    '{ pet(name: "fido") { found(id: "not a global id") } }',
    '{ pet(name: "fido") { name fails } other: pet(name: "rex") { strict } }',
    '{ pet(name: "fido") { wrongColour } }',
    '{ pet(name: "nobody") { name } closed }',
    'query($times: Int) { pet(name: "fido") { greeting(times: $times) } }',
)

VARIABLES: dict[str, Any] = {"name": "rex", "f": {"prefix": "fido-"}, "n": 3, "times": None}


def _readers() -> dict[type, int]:
    counts: dict[type, int] = {}
    for plan in PLANS._plans.values():
        for _, reader in plan._readers.values():
            counts[type(reader)] = counts.get(type(reader), 0) + 1
    return counts


async def _run(schema: strawberry.Schema, text: str, *, plans: bool) -> Any:
    settings = _settings(Path("/tmp"), "sqlite://:memory:")
    context = Context(replace(settings, compiled_plans=plans))
    result = await schema.execute(
        text, context_value=context, root_value=Query(), variable_values=VARIABLES
    )
    errors = [error.formatted for error in result.errors or []]
    return result.data, errors, context.log


def _schema() -> strawberry.Schema:
    return strawberry.Schema(query=Query, execution_context_class=PlannedExecutor)


@MODULE_LOOP
@pytest.mark.parametrize("text", DOCUMENTS)
async def test_asynchronous_fields_answer_as_strawberry_does(text: str) -> None:
    schema = _schema()
    PLANS.clear()
    planned = await _run(schema, text, plans=True)
    standard = await _run(schema, text, plans=False)
    assert planned == standard
    assert _readers().get(AsyncResolverReader, 0) > 0


@MODULE_LOOP
async def test_the_documents_meet_what_they_are_written_for() -> None:
    """Not only equal: the refusals, conversions and errors are there, with their paths."""
    schema = _schema()
    PLANS.clear()
    data, errors, log = await _run(schema, DOCUMENTS[1], plans=True)
    assert data["pets"][0]["secret"] is None and data["pets"][0]["hint"] is None
    assert data["pets"][1]["secret"] == "fido hides None"
    by_path = {tuple(error["path"]): error for error in errors}
    assert by_path[("pets", 0, "secret")]["extensions"] == {"code": "FORBIDDEN"}
    assert ("pets", 0, "hint") not in by_path  # silently
    assert by_path[("pets", 1, "both")]["message"] == "Too many."
    assert ("pets", 1, "vague") in by_path and ("pets", 1, "brokenRule") in by_path
    assert "recorded fido secret" in log and "recorded rex secret" not in log

    data, errors, _ = await _run(schema, DOCUMENTS[4], plans=True)
    assert data["pet"]["found"] == "Pet:1" and data["pet"]["none"] is None
    assert data["pet"]["paint"] == "GREEN" and data["pet"]["many"] == "RED"
    assert data["pet"]["note"] == "None" and data["pet"]["set"] == "Some('x')"
    assert data["pet"]["whose"] == "fido/fido" and data["pet"]["other"] == "fido/fido!"
    assert errors == []

    data, errors, _ = await _run(schema, DOCUMENTS[6], plans=True)
    assert data == {"pet": {"name": "fido", "fails": None}, "other": None}
    assert {tuple(error["path"]) for error in errors} == {("pet", "fails"), ("other", "strict")}
    assert _readers().get(LeafReader, 0) > 0


def test_a_field_under_an_abort_signal_is_left_to_graphql_core() -> None:
    """graphql-core awaits a resolver under a signal its own way (`with_abort_signal`)."""
    schema = _schema()
    settings = _settings(Path("/tmp"), "sqlite://:memory:")
    document = parse(DOCUMENTS[8])
    plain = PlannedExecutor.build(schema._schema, document, Query(), Context(settings))
    signalled = PlannedExecutor.build(
        schema._schema,
        document,
        Query(),
        Context(settings),
        abort_signal=AbortController().signal,
    )
    assert isinstance(plain, PlannedExecutor) and plain._awaits
    assert isinstance(signalled, PlannedExecutor) and not signalled._awaits
