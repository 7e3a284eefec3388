"""A plan keeps the collected sub-fields of an operation whose collection cannot depend on
the request (api/plans/plan.py, `collects_statically`), and only of such an operation: the
answers are those of graphql-core either way."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import strawberry
from graphql import FragmentDefinitionNode, parse

from api.plans import PLANS, PlannedExecutor
from api.plans.plan import collects_statically
from tests.conftest import _settings
from tests.test_plans_completion import Cat, Context, Dog, Query

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


def _static(text: str) -> bool:
    document = parse(text)
    operation = document.definitions[0]
    fragments = {
        definition.name.value: type("Details", (), {"definition": definition})()
        for definition in document.definitions[1:]
        if isinstance(definition, FragmentDefinitionNode)
    }
    return collects_statically(operation, fragments)  # type: ignore[arg-type]


def test_a_directive_anywhere_makes_the_collection_the_requests() -> None:
    assert _static("{ owners { name dogs { name } } }")
    assert _static("query Q { ...F } fragment F on Query { owners { name } }")
    assert not _static("query($s: Boolean!) { owners { name @skip(if: $s) } }")
    assert not _static("{ owners @include(if: true) { name } }")
    assert not _static("{ owners { ... @include(if: false) { name } } }")
    assert not _static("query Q { ...F } fragment F on Query { owners { name @skip(if: true) } }")
    assert not _static("query Q { ...F @skip(if: false) } fragment F on Query { owners { name } }")


async def _answers(schema: strawberry.Schema, text: str, enabled: bool, skip: bool) -> Any:
    settings = _settings(Path("/tmp"), "sqlite://:memory:")
    context = Context(replace(settings, compiled_plans=enabled))
    result = await schema.execute(
        text, context_value=context, root_value=Query(), variable_values={"skip": skip}
    )
    return result.data, [error.formatted for error in result.errors or []]


@MODULE_LOOP
@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "{ owners { name dogs { name bark friend { lives } } pets { ... on Dog { bark } } } }",
            True,
        ),
        ("query($skip: Boolean!) { owners { dogs { name @skip(if: $skip) good } } }", False),
    ],
)
async def test_collected_sub_fields_are_kept_only_when_static(text: str, kept: bool) -> None:
    toy = strawberry.Schema(query=Query, types=[Cat, Dog], execution_context_class=PlannedExecutor)
    PLANS.clear()
    planned = [await _answers(toy, text, True, skip) for skip in (True, False, True, False)]
    standard = [await _answers(toy, text, False, skip) for skip in (True, False, True, False)]
    assert planned == standard
    (plan,) = PLANS._plans.values()
    assert bool(plan._collected) is kept
