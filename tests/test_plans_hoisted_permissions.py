"""A permission decided by the operation alone (`decided_by_operation`) is asked once per
operation and field by a compiled plan (api/plans/plan.py, `hoisted_permission`): granted,
the field's other objects are read without asking again; refused, every object asks, as
strawberry asks. A decision never outlives its operation, and the answers (data, errors,
paths, codes) are those of the standard executor."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import strawberry
from strawberry.permission import BasePermission, PermissionExtension

from api.plans import PLANS, PlannedExecutor
from api.plans.plan import ResolverReader
from resolvers.permissions import SeesIdentity
from tests.conftest import _settings

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

ASKED: list[str] = []


class OperationGrant(BasePermission):
    """Reads the operation's context only, and counts how often it is asked."""

    message = "Not for you."
    error_extensions = {"code": "FORBIDDEN"}
    decided_by_operation = True

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        ASKED.append("operation")
        return bool(info.context.granted)


class ObjectGrant(BasePermission):
    """The same rule, without the marker: asked for every object."""

    message = "Not for you."
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        ASKED.append("object")
        return bool(info.context.granted)


@strawberry.type
class Card:
    name: str
    secret: str = strawberry.field(
        default="s", extensions=[PermissionExtension(permissions=[OperationGrant()])]
    )
    hint: str | None = strawberry.field(
        default="h",
        extensions=[PermissionExtension(permissions=[OperationGrant()], fail_silently=True)],
    )
    plain: str = strawberry.field(
        default="p", extensions=[PermissionExtension(permissions=[ObjectGrant()])]
    )


@strawberry.type
class Query:
    @strawberry.field
    def cards(self) -> list[Card | None]:
        return [Card(name=f"card {n}") for n in range(5)]


@dataclass
class Context:
    settings: Any
    granted: bool


TOY = strawberry.Schema(query=Query, execution_context_class=PlannedExecutor)


async def _run(text: str, *, plans: bool, granted: bool) -> tuple[Any, list[Any]]:
    settings = replace(_settings(Path("/tmp"), "sqlite://:memory:"), compiled_plans=plans)
    result = await TOY.execute(text, context_value=Context(settings, granted), root_value=Query())
    return result.data, [error.formatted for error in result.errors or []]


@MODULE_LOOP
async def test_a_granted_decision_is_taken_once_per_operation_and_field() -> None:
    PLANS.clear()
    ASKED.clear()
    planned = await _run("{ cards { name secret hint } }", plans=True, granted=True)
    assert ASKED == ["operation", "operation"]  # secret, hint: once each for 5 cards
    assert any(type(r) is ResolverReader and r.hoisted for r in _readers())
    ASKED.clear()
    again = await _run("{ cards { name secret hint } }", plans=True, granted=True)
    assert ASKED == ["operation", "operation"]  # a new operation asks again
    ASKED.clear()
    standard = await _run("{ cards { name secret hint } }", plans=False, granted=True)
    assert ASKED == ["operation"] * 10
    assert planned == again == standard
    assert planned[0] == {
        "cards": [{"name": f"card {n}", "secret": "s", "hint": "h"} for n in range(5)]
    }


@MODULE_LOOP
async def test_a_refusal_is_asked_per_object_and_answered_as_strawberry_does() -> None:
    PLANS.clear()
    ASKED.clear()
    planned = await _run("{ cards { name hint secret } }", plans=True, granted=False)
    asked = len(ASKED)
    ASKED.clear()
    standard = await _run("{ cards { name hint secret } }", plans=False, granted=False)
    assert planned == standard
    assert asked >= len(ASKED)  # refusals are never shared: each object is refused
    data, errors = planned
    assert data == {"cards": [None] * 5}
    assert [error["path"] for error in errors] == [["cards", n, "secret"] for n in range(5)]
    assert {error["extensions"]["code"] for error in errors} == {"FORBIDDEN"}


@MODULE_LOOP
async def test_the_decision_does_not_outlive_its_operation() -> None:
    """Granted in one operation, refused in the next: the second is refused."""
    PLANS.clear()
    assert (await _run("{ cards { secret } }", plans=True, granted=True))[1] == []
    data, errors = await _run("{ cards { secret } }", plans=True, granted=False)
    assert data == {"cards": [None] * 5} and len(errors) == 5


@MODULE_LOOP
async def test_a_permission_without_the_marker_is_asked_per_object() -> None:
    PLANS.clear()
    ASKED.clear()
    planned = await _run("{ cards { plain } }", plans=True, granted=True)
    assert ASKED == ["object"] * 5
    assert planned == (await _run("{ cards { plain } }", plans=False, granted=True))
    assert not any(type(r) is ResolverReader and r.hoisted for r in _readers())


def test_only_operation_wide_rules_carry_the_marker() -> None:
    """SeesIdentity reads the actor alone; the guards that read the object do not say so."""
    from resolvers import permissions

    marked = {
        name
        for name, value in vars(permissions).items()
        if isinstance(value, type)
        and issubclass(value, BasePermission)
        and getattr(value, "decided_by_operation", False)
    }
    assert marked == {"SeesIdentity"}
    assert SeesIdentity.decided_by_operation is True


def _readers() -> list[Any]:
    return [reader for plan in PLANS._plans.values() for _, reader in plan._readers.values()]
