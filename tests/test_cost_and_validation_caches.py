"""The caches in front of the cost check and validation: what they are keyed by.

A plan's cost is kept by the values of the variables it reads, each with its type; a plan is
kept by the exact text of its document, in the cost model of one schema. Validation errors
are kept by the identity of the schema and of the parsed document (one per text, from
ParserCache), and by the rules; a request's limits by the identity of its Settings.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from graphql import build_schema, parse
from graphql.validation import NoSchemaIntrospectionCustomRule, specified_rules

from api.config import Settings
from api.extensions import cost as cost_module
from api.extensions.cost import CostError, cost_model
from api.extensions.limits import Limits, limits_of, validated

SDL = """
directive @cost(weight: String!) on OBJECT | FIELD_DEFINITION
directive @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields: [String!],
  requireOneSlicingArgument: Boolean = true) on FIELD_DEFINITION
type User {
  name: String
  age: Int @cost(weight: "2")
  friends(first: Int): [User] @listSize(slicingArguments: ["first"])
}
type Query { users(first: Int, name: String): [User] @listSize(slicingArguments: ["first"]) }
"""
SCHEMA = build_schema(SDL)
TEXT = """query($n: Int, $m: Int, $name: String) {
  users(first: $n, name: $name) { friends(first: $m) { age } }
}"""


def _cost(schema: Any, text: str, variables: dict[str, Any]) -> int:
    return cost_model(schema).cost(parse(text), None, variables, text=text)


def _costs_counted(plan: Any, *variables: dict[str, Any]) -> tuple[list[int], int]:
    """The plan's cost for each set of `variables`, and how many of them were evaluated
    (the others were found kept)."""
    evaluations = 0
    evaluate = cost_module._Evaluation.total

    def counted(self: Any, root: Any) -> int:
        nonlocal evaluations
        evaluations += 1
        return evaluate(self, root)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cost_module._Evaluation, "total", counted)
        costs = [plan.cost(values) for values in variables]
    return costs, evaluations


def test_a_cost_is_kept_for_the_same_variables_and_recomputed_for_others() -> None:
    plan = cost_model(SCHEMA).plan(parse(TEXT), None, TEXT)
    (first, again, other), evaluations = _costs_counted(
        plan,
        {"n": 10, "m": 5, "name": "a"},
        {"n": 10, "m": 5, "name": "a"},
        {"n": 10, "m": 6, "name": "a"},
    )

    assert (first, again, other) == (1 + 10 * (1 + 5 * 2), first, 1 + 10 * (1 + 6 * 2))
    assert evaluations == 2
    assert plan.reads == ("m", "n", "name")


def test_values_equal_in_python_but_of_other_types_are_not_shared() -> None:
    plan = cost_model(SCHEMA).plan(parse(TEXT), None, TEXT)

    # 3.0 is an Int of 3 (graphql-core coerces it); true is no size: the first is required.
    assert plan.cost({"n": 3.0, "m": 1}) == 1 + 3 * (1 + 2)
    with pytest.raises(CostError):
        plan.cost({"n": True, "m": 1})
    assert plan.cost({"n": 1, "m": 1}) == 1 + 1 * (1 + 2)
    with pytest.raises(CostError):  # a refusal is not kept as a cost
        plan.cost({"n": True, "m": 1})


def test_a_missing_variable_and_a_null_one_are_keyed_apart() -> None:
    text = "query($n: Int = 2) { users(first: $n) { age } }"
    plan = cost_model(SCHEMA).plan(parse(text), None, text)

    assert plan.cost({}) == 1 + 2 * 2
    with pytest.raises(CostError):  # null: not given, and `first` is required
        plan.cost({"n": None})
    assert plan.cost({}) == 1 + 2 * 2


def test_strings_share_one_cost_and_their_text_is_not_kept() -> None:
    plan = cost_model(SCHEMA).plan(parse(TEXT), None, TEXT)
    (short, long, null), evaluations = _costs_counted(
        plan,
        {"n": 2, "m": 2, "name": "Ada"},
        {"n": 2, "m": 2, "name": "x" * 10_000},
        {"n": 2, "m": 2, "name": None},
    )

    assert (short, long, null) == (1 + 2 * (1 + 2 * 2),) * 3
    assert evaluations == 2  # a string, whatever its text; then null
    assert all("Ada" not in str(key) for key in plan._costs)


def test_documents_differing_by_one_character_get_plans_of_their_own() -> None:
    two = "{ users(first: 2) { age } }"
    three = "{ users(first: 3) { age } }"

    assert (_cost(SCHEMA, two, {}), _cost(SCHEMA, three, {})) == (1 + 2 * 2, 1 + 3 * 2)
    assert cost_model(SCHEMA).plan(parse(two), None, two) is not cost_model(SCHEMA).plan(
        parse(three), None, three
    )


def test_a_new_schema_has_a_cost_model_of_its_own() -> None:
    text = "query($n: Int) { users(first: $n) { age } }"
    heavier = build_schema(SDL.replace("type User {", 'type User @cost(weight: "5") {'))

    assert _cost(SCHEMA, text, {"n": 2}) == 1 + 2 * 2
    assert cost_model(heavier) is not cost_model(SCHEMA)
    assert _cost(heavier, text, {"n": 2}) == 5 + 2 * 2


# --- validation -----------------------------------------------------------------------------


def test_validation_is_kept_for_the_same_document_object_only() -> None:
    text = "{ users(first: 1) { nope } }"
    document = parse(text)
    rules = tuple(specified_rules)

    errors = validated(SCHEMA, document, rules)
    equal_document = parse(text)  # equal, another object: validated again, same errors

    assert validated(SCHEMA, document, rules) is errors
    assert validated(SCHEMA, equal_document, rules) is not errors
    assert [e.message for e in validated(SCHEMA, equal_document, rules)] == [
        e.message for e in errors
    ]
    assert [e.message for e in errors] == [
        "Cannot query field 'nope' on type 'User'. Did you mean 'name'?"
    ]


def test_validation_is_not_shared_between_schemas_or_rules() -> None:
    text = "{ __schema { queryType { name } } users(first: 1) { name } }"
    document = parse(text)
    rules = tuple(specified_rules)
    other_schema = build_schema(SDL.replace("  name: String\n", ""))

    assert validated(SCHEMA, document, rules) == []
    assert [e.message for e in validated(other_schema, document, rules)] == [
        "Cannot query field 'name' on type 'User'. Did you mean 'age'?"
    ]
    hidden = validated(SCHEMA, document, (*rules, NoSchemaIntrospectionCustomRule))
    assert hidden[0].message == (
        "GraphQL introspection has been disabled, but the requested query contained the"
        " field '__schema'."
    )
    assert validated(SCHEMA, document, rules) == []


# --- limits ---------------------------------------------------------------------------------


def test_the_limits_follow_the_settings_object_of_the_request() -> None:
    settings = Settings.from_env({"ENVIRONMENT": "test", "SECRET_KEY": "k" * 40})
    stricter = replace(settings, max_query_cost=10, max_query_depth=3)

    assert limits_of(SimpleNamespace(settings=settings)) is limits_of(
        SimpleNamespace(settings=settings)
    )
    assert limits_of(SimpleNamespace(settings=stricter)).max_cost == 10
    assert limits_of(SimpleNamespace(settings=stricter)).max_depth == 3
    assert limits_of(SimpleNamespace(settings=settings)).max_cost == settings.max_query_cost
    assert limits_of(SimpleNamespace()) == Limits()
