"""Compiled plans (api/plans/) answer exactly as the standard executor.

The differential test runs every GraphQL document of the test suite that parses and
validates (the string constants of tests/, with the variables it can fill), a curated list
of documents (fragments, aliases, variables, @include/@skip, __typename, partial errors)
and every request of the permission matrix (tests/test_access_matrix.py), for every viewer
of the matrix, through both paths: with `COMPILED_PLANS` on, then off, on the same database
state (each request runs in a transaction rolled back afterwards). The HTTP status, the
whole body (data, errors with their messages, paths, locations and codes) and the access
events each request wrote must be identical; and the plans must have read fields (a
differential test of a plan that reads nothing could not fail).

The plans' cache is tested alone: keyed by the schema's fingerprint (a changed schema gets
new plans) and by the full text of the document (one character apart: two plans).
"""

from __future__ import annotations

import ast
import json
import os
import random
import shutil
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import strawberry
import tortoise.timezone
from argon2 import PasswordHasher
from graphql import (
    GraphQLSchema,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    TypeNode,
    parse,
    validate,
)
from tortoise.transactions import in_transaction

import api.plans.executor as planned
import models.base
import models.blobs
import models.passwords
from api.app import create_app
from api.plans import PLANS, PlanCache, PlannedExecutor, schema_fingerprint
from api.plans.plan import LeafReader, ResolverReader
from api.schema import schema
from models.audit import AccessEvent
from tests.conftest import PG_URL, _settings, _truncate_all
from tests.matrix_support import Kind, Scenario, build, missing_id
from tests.sql_counter import count_statements
from tests.test_access_matrix import CELLS, _query, _registered, _target

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

TESTS = Path(__file__).parent

# Documents written for this test: what the suite's own strings may not combine.
CURATED = (
    # The benchmark's dossier read (bench/dossier.py), and variations of it.
    "query Dossier($id: ID!, $first: Int) { patient(id: $id) { documents(first: $first) "
    "{ edges { node { title category date author { ... on Professional { lastName } "
    "... on Patient { lastName } } } } } } }",
    "query($id: ID!) { patient(id: $id) { __typename id firstName lastName birthDate sex "
    "status documents(first: 50) { totalCount pageInfo { hasNextPage hasPreviousPage "
    "startCursor endCursor } edges { cursor node { __typename id title category date "
    "createdAt mimeType size sha256 hidden hiddenFromRepresentatives contentUrl "
    "author { __typename } } } nodes { id title } } } }",
    # Aliases, the same field twice, merged selections.
    "query($id: ID!) { a: patient(id: $id) { x: lastName y: lastName lastName lastName } "
    "b: patient(id: $id) { documents(first: 2) { edges { node { t: title title } } } } }",
    # Fragments (named, nested, on an interface and on a union), inline fragments.
    "fragment Doc on Document { id title ...Cat } fragment Cat on Document { category date } "
    "query($id: ID!) { patient(id: $id) { documents(first: 10) { edges { node { ...Doc "
    "author { ... on Professional { __typename firstName lastName rpps } "
    "... on Patient { __typename firstName } ... on PartnerApp { __typename } } } } } } }",
    "query($id: ID!) { node(id: $id) { __typename id ... on Patient { lastName } "
    "... on Document { title category } ... on Node { id } } }",
    "query($ids: [ID!]!) { nodes(ids: $ids) { __typename ... on Patient { firstName "
    "vaccinations { id vaccine date doseNumber lotNumber professional { lastName } } "
    "screenings { id kind date result } } } }",
    # @include and @skip, by literal and by variable.
    "query($id: ID!, $yes: Boolean = true, $no: Boolean = false) { patient(id: $id) { "
    "lastName @include(if: $yes) firstName @skip(if: $yes) birthDate @include(if: $no) "
    "sex @skip(if: false) status @include(if: false) "
    "documents(first: 5) @include(if: $yes) { edges { node { title @skip(if: $no) "
    "category @include(if: $no) } } } } }",
    # Partial errors: a denied field beside allowed ones, a missing node among found ones.
    "query($id: ID!) { patient(id: $id) { lastName nir consents { id access } "
    "accessLog(first: 3) { totalCount edges { node { id action basis role } } } "
    "healthProfile { allergies } treatingDoctor { lastName } } }",
    'query($id: ID!) { patient(id: $id) { id } bad: node(id: "UGF0aWVudDp4") { id } '
    "me: viewer { __typename } }",
    # Variables of every scalar kind, with and without defaults.
    "query($id: ID!, $first: Int = 3, $after: String) { patient(id: $id) { "
    "documents(first: $first, after: $after) { edges { cursor node { id } } "
    "pageInfo { endCursor } } } }",
    "query { __typename }",
    "query Named { viewer { __typename } }",
)


# --- the corpus -------------------------------------------------------------------------------


def _valid(text: str) -> bool:
    try:
        document = parse(text)
    except Exception:
        return False
    if validate(schema._schema, document):
        return False
    return not any(
        isinstance(d, OperationDefinitionNode) and d.operation is OperationType.SUBSCRIPTION
        for d in document.definitions
    )


def suite_documents() -> list[str]:
    """Every string constant of tests/ that is a valid query or mutation of the schema."""
    found: dict[str, None] = {}
    for path in sorted(TESTS.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text())
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.strip()
                if text.startswith(("query", "mutation", "{", "fragment")) and _valid(text):
                    found[text] = None
    return list(found)


CORPUS = list(dict.fromkeys([*CURATED, *suite_documents()]))


def _named(node: TypeNode) -> tuple[str, bool, bool]:
    """(named type, required, list) of a variable's type."""
    required = isinstance(node, NonNullTypeNode)
    inner = node.type if isinstance(node, NonNullTypeNode) else node
    is_list = isinstance(inner, ListTypeNode)
    while not isinstance(inner, NamedTypeNode):
        inner = inner.type  # type: ignore[attr-defined]
    return inner.name.value, required, is_list


SCALARS: dict[str, Any] = {
    "String": "x",
    "Int": 3,
    "Boolean": True,
    "Date": "2026-01-15",
    "DateTime": "2026-01-15T10:00:00Z",
}


def variable_sets(text: str, scenario: Scenario) -> Iterator[dict[str, Any]]:
    """Variables for a document: each ID variable takes the subject, then a document of the
    scenario (a document read by `node` and a patient read by `patient` are both covered);
    none if a required variable cannot be filled (an input object, an enum)."""
    document = parse(text)
    targets = [scenario.subject_id, scenario.ids["pro"]]
    for target in targets:
        variables: dict[str, Any] = {}
        for definition in document.definitions:
            for variable in getattr(definition, "variable_definitions", None) or ():
                name = variable.variable.name.value
                type_name, required, is_list = _named(variable.type)
                if type_name == "ID":
                    value: Any = target
                elif type_name in SCALARS:
                    value = SCALARS[type_name]
                elif required:
                    return
                else:
                    continue
                if not required and variable.default_value is not None:
                    continue
                variables[name] = [missing_id("Patient"), value] if is_list else value
        yield variables
        if "ID" not in text:
            return


# --- running one request both ways ------------------------------------------------------------


class _RolledBack(Exception):
    pass


@dataclass
class Answer:
    status: int
    body: Any
    events: list[tuple[Any, ...]]


@dataclass
class World:
    http: httpx.AsyncClient
    scenarios: dict[Kind, Scenario] = field(default_factory=dict)
    compared: int = 0

    async def scenario(self, kind: Kind) -> Scenario:
        if kind not in self.scenarios:
            self.scenarios[kind] = await build(self.http, kind)
        return self.scenarios[kind]

    async def answer(
        self, scenario: Scenario, body: dict[str, Any], *, plans: bool, at: datetime
    ) -> Answer:
        """One request, its answer and the access events it wrote, then rolled back; its
        clock stopped at `at` and its randomness seeded (what it mints is the same on both
        paths: ids, tokens, timestamps)."""
        headers = {"Authorization": f"Bearer {scenario.token}"} if scenario.token else {}
        answer: Answer | None = None
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(planned, "plans_enabled", lambda context: plans)
            token = _SEEDED.set(None)
            _stop_the_clock(patch, at)
            try:
                async with in_transaction():
                    before = await AccessEvent.all().count()
                    response = await self.http.post("/graphql", json=body, headers=headers)
                    written = await AccessEvent.all().count() - before
                    rows = (
                        await AccessEvent.all().order_by("-seq", "-at").limit(written)
                        if written
                        else []
                    )
                    events = sorted(
                        (
                            str(e.patient_id),
                            str(e.actor_id),
                            str(e.actor_role),
                            str(e.action),
                            str(e.basis),
                            str(e.document_id),
                            str(e.establishment_id),
                        )
                        for e in rows
                    )
                    answer = Answer(response.status_code, _normalised(response), events)
                    raise _RolledBack
            except _RolledBack:
                pass
            finally:
                _SEEDED.reset(token)
        assert answer is not None
        return answer

    async def compare(self, scenario: Scenario, body: dict[str, Any]) -> None:
        at = datetime.now(UTC)
        compiled = await self.answer(scenario, body, plans=True, at=at)
        standard = await self.answer(scenario, body, plans=False, at=at)
        where = f"{scenario.kind}: {json.dumps(body)[:300]}"
        assert compiled == standard, where
        self.compared += 1


def _stop_the_clock(patch: pytest.MonkeyPatch, at: datetime) -> None:
    """The domain's clock (models.base.utcnow, the blob store's, Tortoise's auto_now) at
    `at`, and os.urandom (uuid4) and the `secrets` module drawing from one seeded stream."""

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return at if tz is not None else at.replace(tzinfo=None)

    for module in (models.base, models.blobs):
        patch.setattr(module, "datetime", Clock)
    patch.setattr(tortoise.timezone, "now", lambda: at)
    _SEEDED.set(random.Random(0))  # this request's task (and what it starts) only
    patch.setattr(os, "urandom", _seeded_urandom)
    patch.setattr(random, "_urandom", _seeded_urandom)


_SEEDED: ContextVar[random.Random | None] = ContextVar("seeded_urandom", default=None)
_URANDOM = os.urandom


def _seeded_urandom(size: int) -> bytes:
    """The seeded stream of the request's task; the system's for the app's background
    loops (started before, in another context), which run whenever they like."""
    stream = _SEEDED.get()
    return stream.randbytes(size) if stream is not None else _URANDOM(size)


# Values minted afresh by each request whatever the seed (a request id): compared by
# presence and type only.
MINTED = {"requestId"}


def _normalised(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return _without_minted(body)


def _without_minted(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "<minted>" if key in MINTED and isinstance(item, str) else _without_minted(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_without_minted(item) for item in value]
    return value


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(db_template: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            models.passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
        )
        folder = tmp_path_factory.mktemp("plans")
        if PG_URL:
            await _truncate_all(db_template)
            url = db_template
        else:
            shutil.copyfile(db_template, folder / "db.sqlite3")
            url = f"sqlite://{folder / 'db.sqlite3'}"
        settings = replace(
            _settings(folder, url),
            compiled_plans=True,
            rate_limit_requests_per_minute=0,
            rate_limit_cost_per_minute=0,
            rate_limit_address_requests_per_minute=0,
            rate_limit_address_cost_per_minute=0,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield World(http)


def _planned_reads() -> int:
    """Fields of the documents run since the cache was cleared that their plans read (a
    decision is taken when execution reaches the field)."""
    return sum(
        1 for plan in PLANS._plans.values() for _, reader in plan._readers.values() if reader
    )


@MODULE_LOOP
@pytest.mark.skipif(
    bool(PG_URL),
    reason="plans sit above the database: the sweep runs on SQLite (every other test of the "
    "PostgreSQL pass runs with plans on)",
)
@pytest.mark.parametrize("kind", list(Kind))
async def test_compiled_plans_answer_as_the_standard_executor(world: World, kind: Kind) -> None:
    scenario = await world.scenario(kind)
    PLANS.clear()
    compared = world.compared
    if scenario.app_client is not None:
        # A partner app sends only the documents registered on its list: the matrix's own.
        for cell in CELLS:
            if cell.kind is kind and cell.path != "content":
                query = _query(cell)
                body = {"documentId": await _registered(query, scenario.app_client)}
                body["variables"] = _matrix_variables(cell, scenario)
                await world.compare(scenario, body)
    else:
        for cell in CELLS:
            if cell.kind is kind and cell.path != "content":
                body = {"query": _query(cell), "variables": _matrix_variables(cell, scenario)}
                await world.compare(scenario, body)
        for text in CORPUS:
            for variables in variable_sets(text, scenario):
                await world.compare(scenario, {"query": text, "variables": variables})
    assert _planned_reads() > 0, "the plans read no field: the comparison proves nothing"
    assert world.compared - compared >= (100 if scenario.app_client else 500)


def _matrix_variables(cell: Any, scenario: Scenario) -> dict[str, Any]:
    target = _target(cell, scenario)
    if cell.path == "nodes":
        return {"ids": [missing_id(cell.row.type_name), target]}
    if cell.path == "patient":
        return {"id": scenario.subject_id}
    return {"id": target}


def test_the_corpus_is_large() -> None:
    assert len(CORPUS) >= 100, len(CORPUS)
    assert sum(text.startswith("mutation") for text in CORPUS) >= 30


# --- the cache --------------------------------------------------------------------------------


def _toy_schema(with_resolver: bool) -> GraphQLSchema:
    if with_resolver:

        @strawberry.type
        class Query:
            @strawberry.field
            def name(self) -> str:
                return "resolved"

    else:

        @strawberry.type
        class Query:  # type: ignore[no-redef]
            name: str = "plain"

    return strawberry.Schema(query=Query, execution_context_class=PlannedExecutor)._schema


def _operation(text: str) -> OperationDefinitionNode:
    (operation,) = parse(text).definitions
    assert isinstance(operation, OperationDefinitionNode)
    return operation


def test_plans_are_keyed_by_the_schema_fingerprint() -> None:
    cache = PlanCache()
    plain, resolved = _toy_schema(False), _toy_schema(True)
    assert schema_fingerprint(plain) != schema_fingerprint(resolved)
    operation = _operation("{ name }")
    first = cache.plan_for(plain, operation)
    second = cache.plan_for(resolved, operation)
    assert first is not None and second is not None
    assert first is not second
    assert first.fingerprint != second.fingerprint
    node = operation.selection_set.selections[0]
    query_plain, query_resolved = plain.query_type, resolved.query_type
    assert query_plain is not None and query_resolved is not None
    assert isinstance(first.reader(query_plain, node), LeafReader)
    # A resolver: called as strawberry's wrapper would (nothing around it to run).
    assert isinstance(second.reader(query_resolved, node), ResolverReader)
    assert cache.plan_for(plain, operation) is first  # same schema, same document: reused
    # The same SDL in another schema object (another deployment of the same code): the
    # key is the same, the plan is rebuilt for that object.
    again = _toy_schema(False)
    assert schema_fingerprint(again) == schema_fingerprint(plain)
    assert cache.plan_for(again, operation) is not first


def test_plans_are_never_shared_between_documents_one_character_apart() -> None:
    cache = PlanCache()
    toy = _toy_schema(False)
    one, other = _operation("{ name }"), _operation("{ name }\n")
    a, b = cache.plan_for(toy, one), cache.plan_for(toy, other)
    assert a is not None and b is not None
    assert a is not b and a.sha256 != b.sha256
    assert len(cache) == 2
    # A re-parse of the same text (its cache evicted) is a plan of its own too.
    assert cache.plan_for(toy, _operation("{ name }")) is not a


def test_the_cache_is_bounded() -> None:
    cache = PlanCache(max_entries=3)
    toy = _toy_schema(False)
    for n in range(5):
        cache.plan_for(toy, _operation("{ name }" + " " * n))
    assert len(cache) == 3


@MODULE_LOOP
async def test_the_setting_switches_plans_off() -> None:
    query = "{ name __typename }"
    for enabled in (True, False):
        query_type = _toy_query()
        toy = strawberry.Schema(query=query_type, execution_context_class=PlannedExecutor)
        cache_before = PLANS.built

        @dataclass
        class Context:
            settings: Any

        settings = replace(_settings(Path("/tmp"), "sqlite://:memory:"), compiled_plans=enabled)
        result = await toy.execute(query, context_value=Context(settings), root_value=query_type())
        assert result.errors is None
        assert result.data == {"name": "plain", "__typename": "Query"}
        assert (PLANS.built > cache_before) is enabled


def _toy_query() -> type:
    @strawberry.type
    class Query:
        name: str = "plain"

    return Query


# --- the fallbacks ----------------------------------------------------------------------------


class _Raw:
    """A source whose basic fields go wrong every way a read can."""

    def __init__(self, n: int) -> None:
        self.n = n

    @property
    def name(self) -> Any:
        return None if self.n == 1 else f"item {self.n}"  # null on a non-null field

    @property
    def count(self) -> Any:
        return "many" if self.n == 2 else self.n  # not an Int

    @property
    def flag(self) -> bool:
        if self.n == 3:
            raise ValueError("no flag")  # the read itself fails
        return True

    @property
    def label(self) -> Any:
        async def later() -> str:
            return f"label {self.n}"

        return later() if self.n == 4 else "now"  # an awaitable from a basic field

    @property
    def kind(self) -> Any:
        return "NOT_A_MEMBER" if self.n == 5 else _Kind.ONE  # not a value of the enum


@strawberry.enum
class _Kind(Enum):
    ONE = "one"


@strawberry.type
class _Item:
    name: str
    count: int | None
    flag: bool | None
    label: str
    kind: _Kind | None


@strawberry.type
class _Items:
    @strawberry.field
    def items(self) -> list[_Item | None]:
        return [_Raw(n) for n in range(7)]  # type: ignore[misc]

    @strawberry.field
    def strict(self) -> list[_Item]:
        return [_Raw(0), _Raw(1)]  # type: ignore[list-item]


@MODULE_LOOP
async def test_what_a_plan_cannot_read_is_completed_as_graphql_core_does() -> None:
    toy = strawberry.Schema(query=_Items, execution_context_class=PlannedExecutor)
    settings = _settings(Path("/tmp"), "sqlite://:memory:")

    @dataclass
    class Context:
        settings: Any

    answers = []
    PLANS.clear()
    for enabled in (True, False):
        assert (_planned_reads() > 0) is not enabled  # the plans read the toy's fields
        context = Context(replace(settings, compiled_plans=enabled))
        for query in (
            "{ items { name count flag label kind __typename } }",
            "{ strict { name } }",
            "{ items { count label } strict { label } }",
        ):
            result = await toy.execute(query, context_value=context, root_value=_Items())
            errors = [error.formatted for error in result.errors or []]
            answers.append((enabled, query, result.data, errors))
    planned_answers = [a[1:] for a in answers if a[0]]
    standard_answers = [a[1:] for a in answers if not a[0]]
    assert planned_answers == standard_answers
    _, data, errors = standard_answers[0]
    assert data["items"][0]["label"] == "now"
    assert data["items"][4]["label"] == "label 4"  # the awaitable, awaited
    assert data["items"][1] is None  # the null name nulled its item
    assert {tuple(e["path"]) for e in errors} == {
        ("items", 1, "name"),
        ("items", 2, "count"),
        ("items", 3, "flag"),
        ("items", 5, "kind"),
    }
    assert standard_answers[1][1] is None  # a null in a list of non-null items: no data


@MODULE_LOOP
async def test_statements_per_request_do_not_grow_with_the_page_on_either_path(
    world: World,
) -> None:
    scenario = await world.scenario(Kind.READ)  # reads two of the subject's documents
    headers = {"Authorization": f"Bearer {scenario.token}"}
    counts: dict[tuple[bool, int], int] = {}
    for plans in (True, False):
        for first in (1, 2):
            body = {"query": CURATED[0], "variables": {"id": scenario.subject_id, "first": first}}
            with pytest.MonkeyPatch.context() as patch, count_statements() as statements:
                patch.setattr(planned, "plans_enabled", lambda context, on=plans: on)
                answer = (await world.http.post("/graphql", json=body, headers=headers)).json()
            assert len(answer["data"]["patient"]["documents"]["edges"]) == first, answer
            counts[(plans, first)] = len(statements)
    assert len(set(counts.values())) == 1, counts
