"""The plan's completion of objects, lists of objects, unions and plain resolvers
(api/plans/executor.py) answers exactly as graphql-core's, whatever goes wrong where.

A toy schema whose sources go wrong every way a value can on those paths (a null where the
type says non-null, an object its type refuses, an error returned or raised, an awaitable
item or field, a `strawberry.cast`, a tuple instead of a list, a resolver that raises) is
executed with the plans on and off; data and errors (messages, paths, locations) must be
identical, and the plans must have taken their own paths (the readers are counted).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import pytest
import strawberry
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension

from api.plans import PLANS, PlannedExecutor
from api.plans.plan import LeafReader, ObjectReader, ResolverReader
from tests.conftest import _settings

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Cat(Named):
    lives: int


class NotRex(BasePermission):
    message = "Rex's secrets are his."
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return bool(source.name != "rex" and info.field_name)


class Shouts(FieldExtension):
    """A field extension around the resolver (not a permission), as a chain may hold."""

    def resolve(self, next_: Any, source: Any, info: strawberry.Info, **kwargs: Any) -> Any:
        return str(next_(source, info, **kwargs)).upper()


@strawberry.type
class Dog(Named):
    good: bool
    secret: str = strawberry.field(
        default="bones", extensions=[PermissionExtension(permissions=[NotRex()])]
    )
    diary: str | None = strawberry.field(
        default="walks", extensions=[PermissionExtension(permissions=[NotRex()])]
    )
    hint: str | None = strawberry.field(
        default="garden",
        extensions=[PermissionExtension(permissions=[NotRex()], fail_silently=True)],
    )

    @strawberry.field(extensions=[Shouts(), PermissionExtension(permissions=[NotRex()])])
    def motto(self, root: Any, _info: strawberry.Info) -> str:
        return f"{root.name} {_info.field_name} {self.good}"

    @strawberry.field
    def bark(self) -> str:
        if self.name == "mute":
            raise ValueError("this dog does not bark")
        return f"{self.name}: woof"

    @strawberry.field
    def friend(self, info: strawberry.Info) -> Cat | None:
        if self.name == "lonely":
            return None
        return Cat(name=f"{self.name}'s cat", lives=9)


Pet = Annotated[Cat | Dog, strawberry.union("Pet")]


class NotAPet:
    name = "stone"


@strawberry.type
class Owner:
    name: str
    pets: list[Pet]
    dogs: list[Dog]
    maybe_dogs: list[Dog | None] | None
    best: Dog
    spare: Dog | None

    @strawberry.field
    def favourite(self) -> Pet | None:
        return self.pets[0] if self.pets else None


class Later:
    """An awaitable item (not a coroutine: one not selected is never awaited, silently)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        if False:  # pragma: no cover - a generator that never suspends
            yield
        return self.value


def _owner(n: int) -> Owner:
    dogs: Any = [Dog(name=f"dog {n}", good=True), Dog(name="mute" if n == 0 else "", good=False)]
    best: Any = Dog(name="lonely", good=True)
    spare: Any = None
    maybe: Any = [Dog(name="x", good=True), None]
    pets: Any = [Cat(name="tom", lives=n), Dog(name="rex", good=True)]
    if n == 1:
        dogs = (Dog(name="tuple", good=True),)  # not a list: graphql-core's path
    if n == 2:
        dogs = [Dog(name="a", good=True), None]  # a null in a list of non-null items
    if n == 3:
        best = NotAPet()  # refused by is_type_of
    if n == 4:
        maybe = [Later(Dog(name="later", good=True)), Dog(name="now", good=False)]  # awaitable
    if n == 5:
        spare = ValueError("no spare")  # an error returned as the value
    if n == 6:
        pets = [strawberry.cast(Dog, Dog(name="cast", good=True))]
    if n == 7:
        pets = [NotAPet()]  # no strawberry definition: strawberry's resolver refuses it
    if n == 8:
        best = Dog(name=None, good=True)  # type: ignore[arg-type]  # a null non-null leaf
    return Owner(name=f"owner {n}", pets=pets, dogs=dogs, maybe_dogs=maybe, best=best, spare=spare)


@strawberry.type
class Query:
    @strawberry.field
    def owners(self) -> list[Owner | None]:
        return [_owner(n) for n in range(9)]

    @strawberry.field
    def strict(self) -> list[Owner]:
        return [_owner(0), _owner(2)]

    @strawberry.field
    async def later(self) -> Owner:
        return _owner(0)


DOCUMENTS = (
    "{ owners { pets { ... on Dog { name diary hint } } dogs { secret hint motto } } }",
    "{ owners { pets { ... on Dog { secret } } } }",
    "{ owners { name pets { __typename ... on Cat { name lives } ... on Dog { name good bark } }"
    " dogs { name good bark friend { name lives } } maybeDogs { name } best { name good }"
    " spare { name } favourite { __typename ... on Named { name } } } }",
    "{ strict { name dogs { name } } }",
    "{ owners { best { bark } } }",
    "{ owners { a: dogs { name } b: dogs { good __typename } } }",
    "{ later { name dogs { name bark friend { lives } } pets { ... on Dog { bark } } } }",
    "query($skip: Boolean!) { owners { dogs { name @skip(if: $skip) good } } }",
)


@dataclass
class Context:
    settings: Any


def _readers() -> dict[type, int]:
    counts: dict[type, int] = {}
    for plan in PLANS._plans.values():
        for _, reader in plan._readers.values():
            counts[type(reader)] = counts.get(type(reader), 0) + 1
    return counts


@MODULE_LOOP
@pytest.mark.parametrize("text", DOCUMENTS)
async def test_the_plan_completes_as_graphql_core_does(text: str) -> None:
    toy = strawberry.Schema(query=Query, types=[Cat, Dog], execution_context_class=PlannedExecutor)
    settings = _settings(Path("/tmp"), "sqlite://:memory:")
    answers = []
    PLANS.clear()
    for enabled in (True, False):
        context = Context(replace(settings, compiled_plans=enabled))
        for skip in (True, False):
            result = await toy.execute(
                text, context_value=context, root_value=Query(), variable_values={"skip": skip}
            )
            errors = [error.formatted for error in result.errors or []]
            answers.append((result.data, errors))
    assert answers[:2] == answers[2:]
    assert answers[0][0] is not None or text.startswith(("{ strict", "{ later"))  # nulled
    readers = _readers()
    assert readers.get(ObjectReader, 0) + readers.get(ResolverReader, 0) > 0, readers


@MODULE_LOOP
async def test_the_fallbacks_are_reached() -> None:
    """The third document meets every detour: its errors are those graphql-core raises."""
    toy = strawberry.Schema(query=Query, types=[Cat, Dog], execution_context_class=PlannedExecutor)
    settings = _settings(Path("/tmp"), "sqlite://:memory:")
    PLANS.clear()
    result = await toy.execute(DOCUMENTS[2], context_value=Context(settings), root_value=Query())
    paths = {tuple(error.path or ()) for error in result.errors or []}
    assert ("owners", 0, "dogs", 1, "bark") in paths  # a resolver that raises
    assert ("owners", 2, "dogs", 1) in paths  # a null item of a non-null list
    assert ("owners", 3, "best") in paths  # refused by is_type_of
    assert ("owners", 5, "spare") in paths  # an error as the value
    assert ("owners", 7, "pets", 0) in paths  # no member of the union
    assert ("owners", 8, "best", "name") in paths  # a null non-null leaf
    assert result.data is not None
    owners = result.data["owners"]
    assert owners[1]["dogs"] == [
        {
            "name": "tuple",
            "good": True,
            "bark": "tuple: woof",
            "friend": {"name": "tuple's cat", "lives": 9},
        }
    ]
    assert owners[4]["maybeDogs"] == [{"name": "later"}, {"name": "now"}]
    assert owners[6]["pets"] == [
        {"__typename": "Dog", "name": "cast", "good": True, "bark": "cast: woof"}
    ]
    assert owners[0] is None  # its mute dog's non-null bark nulled it
    assert owners[1]["favourite"] == {"__typename": "Cat", "name": "tom"}
    assert owners[3] is None and owners[7] is None and owners[8] is None
    readers = _readers()
    assert readers.get(LeafReader, 0) > 0 and readers.get(ObjectReader, 0) > 0
    assert readers.get(ResolverReader, 0) > 0


@MODULE_LOOP
async def test_permissions_run_on_the_plan() -> None:
    """A guarded field's permission runs (the same `has_permission`), its refusal as there."""
    toy = strawberry.Schema(query=Query, types=[Cat, Dog], execution_context_class=PlannedExecutor)
    settings = _settings(Path("/tmp"), "sqlite://:memory:")
    PLANS.clear()
    result = await toy.execute(DOCUMENTS[0], context_value=Context(settings), root_value=Query())
    assert any(type(r) is ResolverReader and r.chain for r in _all_readers())
    assert result.data is not None
    pets = result.data["owners"][1]["pets"]
    assert pets == [{}, {"name": "rex", "diary": None, "hint": None}]  # refused, silently
    dogs = result.data["owners"][1]["dogs"]
    assert dogs[0] == {"secret": "bones", "hint": "garden", "motto": "TUPLE MOTTO TRUE"}
    errors = {(tuple(e.path or ()), e.message) for e in result.errors or []}
    assert (("owners", 1, "pets", 1, "diary"), "Rex's secrets are his.") in errors
    assert not any(path[-1] == "hint" for path, _ in errors)


def _all_readers() -> list[Any]:
    return [reader for plan in PLANS._plans.values() for _, reader in plan._readers.values()]
