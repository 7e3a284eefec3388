"""Cost analysis (IBM GraphQL Cost Directives) and the limits on an operation's shape.

The estimate follows the specification's examples exactly; the API's schema carries the
directives (schema.graphql); a request over any limit is refused as QUERY_TOO_COMPLEX before
anything runs, over HTTP and over the websocket; each limit has a setting.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from graphql import (
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLObjectType,
    GraphQLUnionType,
    build_schema,
    get_named_type,
    get_nullable_type,
    parse,
)

from api.app import create_app
from api.config import ConfigError, Settings
from api.extensions.cost import CostError, cost_model, estimate
from api.extensions.errors import MaskInternalErrors
from api.extensions.limits import limit_extensions
from api.schema import schema
from api.view import GRAPHQL_RESPONSE_JSON
from models.audit import AccessEvent
from resolvers.cost import ListSize
from tests.asgi_websocket import asgi_websocket
from tests.factories import make_patient
from tests.sql_counter import count_statements

# --- the specification's examples ---------------------------------------------------------

# The schemas of the specification's examples (№ 1, 10-13, 18), in one SDL, with an
# interface, a union and an unsized list for the rules of §7.1-7.2 around them.
SPEC_SDL = """
directive @cost(weight: String!) on
  ARGUMENT_DEFINITION | ENUM | FIELD_DEFINITION | INPUT_FIELD_DEFINITION | OBJECT | SCALAR
directive @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields: [String!],
  requireOneSlicingArgument: Boolean = true) on FIELD_DEFINITION
directive @approx(tolerance: Float! @cost(weight: "-1.0")) on FIELD

enum Approximate { YES }
input Filter { approx: Approximate @cost(weight: "-12.0") }

type User { name: String age: Int @cost(weight: "2.0") }
type Product { name: String }
type Film { title: String }
type FilmEdge { cursor: ID node: Film }
type PageInfo { hasNextPage: Boolean }
type FilmConnection { edges: [FilmEdge] pageInfo: PageInfo }

interface Media { title: String }
type Book implements Media @cost(weight: "3.0") { title: String pages: Int }
type Movie implements Media { title: String length: Int @cost(weight: "4.0") }
union Result = Book | User

type Query {
  users(max: Int): [User] @listSize(slicingArguments: ["max"])
  topProducts(filter: Filter @cost(weight: "15.0")): [String]
    @cost(weight: "5.0") @listSize(assumedSize: 10)
  mostPopularProduct(approx: Approximate @cost(weight: "-3.0")): Product @cost(weight: "5.0")
  cheapProduct(approx: Approximate @cost(weight: "-3.0")): Product @cost(weight: "1.0")
  films(first: Int, after: ID, last: Int, before: ID): FilmConnection
    @listSize(slicingArguments: ["first", "last"], sizedFields: ["edges"])
  media: [Media] @listSize(assumedSize: 2)
  results: [Result] @listSize(assumedSize: 3)
  everyone: [User]
}
"""
SPEC_SCHEMA = build_schema(SPEC_SDL)

FILMS = "edges { node { title } } pageInfo { hasNextPage }"

SPEC_COSTS = [
    # № 2: Query.users runs once (1), then User.age (2.0) for each of at most 5 users.
    ("№2", "query Example { users(max: 5) { age } }", None, 11),
    (
        "№2, as many users as the variable says",
        "query($n: Int) { users(max: $n) { age } }",
        {"n": 3},
        7,
    ),
    ("№2, the variable's default", "query($n: Int = 4) { users(max: $n) { age } }", None, 9),
    # № 10: 5.0, and 15.0 more with a filter.
    ("№10", "{ topProducts }", None, 5),
    ("№10, with a filter", "{ topProducts(filter: {}) }", None, 20),
    # № 11: a negative argument weight lowers the field's 5.0 to 2.0.
    ("№11", "{ mostPopularProduct { name } }", None, 5),
    ("№11, approximate", "{ mostPopularProduct(approx: YES) { name } }", None, 2),
    ("§7.1, a field never weighs less than 0", "{ cheapProduct(approx: YES) { name } }", None, 0),
    # № 12: the input field's -12.0 leaves the filter 3.0, the field 8.0.
    ("№12", "{ topProducts(filter: {approx: YES}) }", None, 8),
    (
        "№12, from a variable",
        "query($f: Filter) { topProducts(filter: $f) }",
        {"f": {"approx": "YES"}},
        8,
    ),
    # № 13: each use of @approx adds its argument's -1.0.
    ("№13", "{ topProducts @approx(tolerance: 0.1) }", None, 4),
    # № 18: first: 10 sizes FilmConnection.edges: 1 + edges 1 + 10 nodes + pageInfo 1.
    ("№18", f"{{ films(first: 10) {{ {FILMS} }} }}", None, 13),
    ("№18, by last", "{ films(last: 3) { edges { cursor node { title } } } }", None, 5),
    ("№18, from a variable", f"query($n: Int) {{ films(first: $n) {{ {FILMS} }} }}", {"n": 30}, 33),
    # Fragments count where they are spread, as often as they are.
    (
        "fragments",
        "{ ...F } fragment F on Query { users(max: 2) { ...A } } fragment A on User { age }",
        None,
        5,
    ),
    (
        "a fragment spread twice",
        "{ users(max: 2) { ...A ...A } } fragment A on User { age }",
        None,
        9,
    ),
    ("inline fragments", "{ users(max: 2) { ... on User { age } ... { age } } }", None, 9),
    ("@skip(if: true)", "{ users(max: 5) { age @skip(if: true) } }", None, 1),
    (
        "@include with a variable, false",
        "query($on: Boolean!) { users(max: 5) { age @include(if: $on) } }",
        {"on": False},
        1,
    ),
    (
        "@include with a variable, true",
        "query($on: Boolean!) { users(max: 5) { age @include(if: $on) } }",
        {"on": True},
        11,
    ),
    # §7.2: an interface weighs its heaviest member (Book 3.0); each item its costliest type.
    (
        "an interface",
        "{ media { title ... on Book { pages } ... on Movie { length } } }",
        None,
        3 + 2 * 4,
    ),
    ("a union", "{ results { ... on User { age } ... on Book { pages } } }", None, 3 + 3 * 2),
    # A list no directive sizes counts UNSIZED_LIST (100) items.
    ("an unsized list", "{ everyone { age } }", None, 1 + 100 * 2),
    (
        "introspection is not counted",
        "{ __schema { types { name } } users(max: 1) { age } }",
        None,
        3,
    ),
]


@pytest.mark.parametrize(
    ("document", "variables", "expected"),
    [case[1:] for case in SPEC_COSTS],
    ids=[case[0] for case in SPEC_COSTS],
)
def test_the_cost_of_the_specifications_examples(
    document: str, variables: dict[str, Any] | None, expected: int
) -> None:
    assert estimate(SPEC_SCHEMA, parse(document), None, variables) == expected


@pytest.mark.parametrize(
    "document",
    [
        f"{{ films {{ {FILMS} }} }}",
        f"{{ films(first: 2, last: 2) {{ {FILMS} }} }}",
        f"query($n: Int) {{ films(first: $n) {{ {FILMS} }} }}",  # null: not given
    ],
)
def test_require_one_slicing_argument_refuses_none_or_two(document: str) -> None:
    with pytest.raises(CostError) as refused:
        estimate(SPEC_SCHEMA, parse(document), None, {"n": None})

    assert str(refused.value) == "`Query.films` takes exactly one of `first`, `last`."


def test_a_document_is_planned_once_and_costed_with_each_request_variables() -> None:
    model = cost_model(SPEC_SCHEMA)
    text = f"query($n: Int) {{ films(first: $n) {{ {FILMS} }} }}"

    plan = model.plan(parse(text), None, text)

    assert model.plan(parse(text), None, text) is plan
    assert [plan.cost({"n": n}) for n in (1, 10, 100)] == [4, 13, 103]


# --- the API's schema -------------------------------------------------------------------


def test_schema_graphql_declares_the_directives_of_the_specification() -> None:
    sdl = (Path(__file__).resolve().parent.parent / "schema.graphql").read_text()

    assert (
        "directive @cost(weight: String!) on ARGUMENT_DEFINITION | ENUM | FIELD_DEFINITION"
        " | INPUT_FIELD_DEFINITION | OBJECT | SCALAR\n"
    ) in sdl
    assert (
        "directive @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields:"
        " [String!], requireOneSlicingArgument: Boolean = true) on FIELD_DEFINITION\n"
    ) in sdl


def _fields() -> list[tuple[str, Any]]:
    types = schema._schema.type_map.values()
    return [
        (f"{t.name}.{name}", definition)
        for t in types
        if isinstance(t, GraphQLObjectType | GraphQLInterfaceType) and not t.name.startswith("__")
        for name, definition in t.fields.items()
    ]


def test_every_list_and_connection_of_the_schema_is_sized() -> None:
    model = cost_model(schema._schema)
    unsized, connections = [], {}
    for coordinate, definition in _fields():
        named = get_named_type(definition.type)
        is_list = isinstance(get_nullable_type(definition.type), GraphQLList)
        is_connection = named.name.endswith("Connection") and isinstance(named, GraphQLObjectType)
        composite = isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLUnionType)
        if coordinate.endswith(("Connection.edges", "Connection.nodes")):
            continue  # sized by the field that returns the connection (`sizedFields`)
        if (is_list and composite) or is_connection:
            rule = model.size_rule(definition)
            if rule is None:
                unsized.append(coordinate)
            elif is_connection:
                connections[coordinate] = (rule.slicing_arguments, set(rule.sized_fields))

    assert unsized == []
    assert sorted(connections) == [
        "Conversation.messages",
        "DossierPreview.documents",
        "Establishment.conversations",
        "Patient.accessLog",
        "Patient.appointments",
        "Patient.conversations",
        "Patient.documents",
        "Patient.reminders",
        "Professional.appointments",
        "Professional.conversations",
        "Professional.patients",
    ]
    assert [
        value for value in connections.values() if value != (("first", "last"), {"edges", "nodes"})
    ] == []


def test_every_mutation_weighs_a_write() -> None:
    model = cost_model(schema._schema)
    mutation = schema._schema.mutation_type
    assert mutation is not None

    assert {name: model.weight(field) for name, field in mutation.fields.items()} == {
        name: 10 for name in mutation.fields
    }


# --- over HTTP ----------------------------------------------------------------------------

COST = {"X-Query-Cost": "true"}
DOSSIER = """query($id: ID!, $first: Int) { patient(id: $id) { documents(first: $first) {
  edges { node { title category date author { ... on Professional { lastName }
  ... on Patient { lastName } } } } } } }"""
HOLDER_PAGE = """query($first: Int) { viewer { ... on Patient {
  documents(first: $first) { edges { node { id } } } } } }"""
LOGIN = """mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { token viewer { __typename } } }"""
# 1 + 2 ** 22 copies of `viewer`, in a few hundred tokens.
FRAGMENT_BOMB = (
    "query { ...F0 }\n"
    + "".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}\n" for i in range(22))
    + "fragment F22 on Query { viewer { __typename } }"
)


@asynccontextmanager
async def api(settings: Settings, **limits: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(replace(settings, **limits))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def post(
    http: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"Accept": GRAPHQL_RESPONSE_JSON, **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    return await http.post("/graphql", json={"query": query, "variables": variables}, headers=sent)


# Each cost by hand: a field returning an object weighs 1 (a scalar 0), a mutation 10;
# a connection sizes its edges by `first` (20 without it).
API_COSTS = [
    ("the viewer", "{ viewer { __typename } }", None, 1),
    # patient 1, documents 1, edges 1, then per document: node 1 and author 1.
    ("the benchmark's dossier read", DOSSIER, {"id": "x", "first": 20}, 3 + 20 * 2),
    ("the same, first page by default", DOSSIER, {"id": "x"}, 3 + 20 * 2),
    ("the same, a page of 100", DOSSIER, {"id": "x", "first": 100}, 3 + 100 * 2),
    # totalCount runs a statement of its own: 1.
    (
        "a count",
        "query($id: ID!) { patient(id: $id) { documents(first: 50) { totalCount } } }",
        {"id": "x"},
        3,
    ),
    # nodes 1, and per id sent the costliest Node: a Patient, documents 1, edges 1, 5 nodes.
    (
        "as many nodes as ids sent",
        "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Patient { documents(first: 5) {"
        " edges { node { id } } } } } }",
        {"ids": ["a", "b", "c"]},
        1 + 3 * 7,
    ),
    # Without its ids (refused then by the execution, as a missing variable): MAX_NODES.
    (
        "nodes without ids",
        "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Patient { documents(first: 5) {"
        " edges { node { id } } } } } }",
        None,
        1 + 100 * 7,
    ),
    # login 10, its input object 1, viewer 1.
    ("a mutation", LOGIN, {"email": "nobody@example.org", "password": "x"}, 12),
]


@pytest.mark.parametrize(
    ("query", "variables", "expected"),
    [case[1:] for case in API_COSTS],
    ids=[case[0] for case in API_COSTS],
)
async def test_the_cost_of_a_request_is_in_its_answer_when_asked_for(
    settings: Settings, query: str, variables: dict[str, Any] | None, expected: int
) -> None:
    async with api(settings) as http:
        asked = await post(http, query, variables, headers=COST)
        not_asked = await post(http, query, variables)

    assert asked.json()["extensions"] == {"cost": expected}
    assert "extensions" not in not_asked.json()


async def test_a_request_at_the_cost_limit_runs_and_one_over_it_is_refused(
    settings: Settings,
) -> None:
    async with api(settings, max_query_cost=50) as http:
        holder = await make_patient()
        # viewer 1, documents 1, edges 1 and 47 nodes.
        at_limit = await post(http, HOLDER_PAGE, {"first": 47}, token=holder.token, headers=COST)
        over = await post(http, HOLDER_PAGE, {"first": 48}, token=holder.token)

    assert at_limit.status_code == 200
    assert at_limit.json() == {
        "data": {"viewer": {"documents": {"edges": []}}},
        "extensions": {"cost": 50},
    }
    assert over.status_code == 422  # a validation rule (GraphQL-over-HTTP: 422)
    assert over.json() == {
        "errors": [
            {
                "message": "The estimated cost of this operation, 51, is over the 50 allowed.",
                "extensions": {"code": "QUERY_TOO_COMPLEX", "cost": 51, "maxCost": 50},
            }
        ]
    }


LIMITS = [
    (
        "depth",
        {"max_query_depth": 4},
        "{ viewer { ... on Patient { documents { edges { node { id } } } } } }",
        "{ viewer { ... on Patient { documents { edges { node { author { __typename } } } } } } }",
        "'anonymous' exceeds maximum operation depth of 4",
    ),
    (
        "aliases",
        {"max_aliases": 2},
        "{ a: viewer { __typename } b: viewer { __typename } }",
        "{ a: viewer { __typename } b: viewer { __typename } c: viewer { __typename } }",
        "3 aliases found. Allowed: 2",
    ),
    (
        "directives, a fragment's counted where it is spread",
        {"max_directives": 2},
        "{ viewer @include(if: true) { __typename @skip(if: false) } }",
        "{ ...V } fragment V on Query { viewer @include(if: true) { ...T ...T } }"
        " fragment T on Viewer { __typename @skip(if: false) }",
        "3 directives found. Allowed: 2",
    ),
    (
        "tokens",
        {"max_tokens": 6},
        "{ viewer { __typename } }",
        "{ viewer { __typename __typename } }",
        "Syntax Error: Document contains more than 6 tokens. Parsing aborted.",
    ),
]


@pytest.mark.parametrize(
    ("limit", "under", "over", "message"),
    [case[1:] for case in LIMITS],
    ids=[case[0] for case in LIMITS],
)
async def test_each_limit_lets_a_request_at_it_through_and_refuses_one_over(
    settings: Settings, limit: dict[str, int], under: str, over: str, message: str
) -> None:
    async with api(settings, **limit) as http:
        accepted = await post(http, under)
        refused = await post(http, over)

    assert accepted.status_code == 200
    assert "errors" not in accepted.json()
    # A document over MAX_TOKENS does not parse (400); the other limits are validation (422).
    assert refused.status_code == (400 if message.startswith("Syntax Error") else 422)
    [error] = refused.json()["errors"]
    assert error["message"] == message
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}


async def test_an_expensive_request_is_refused_before_any_sql(settings: Settings) -> None:
    expensive = {"first": 10_000}
    async with api(settings) as http:
        holder = await make_patient()
        with count_statements() as anonymous:
            refused = await post(http, HOLDER_PAGE, expensive)
        with count_statements() as never_executed:  # the same token, an invalid document
            invalid = await post(http, "{ nope }", token=holder.token)
        with count_statements() as authenticated:
            refused_too = await post(http, HOLDER_PAGE, expensive, token=holder.token)
        access_events = await AccessEvent.all().count()

    assert anonymous == []
    assert authenticated == never_executed  # the token's look-up, nothing more
    assert invalid.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    for response in (refused, refused_too):
        assert response.status_code == 422
        assert response.json()["errors"][0]["extensions"] == {
            "code": "QUERY_TOO_COMPLEX",
            "cost": 10_003,
            "maxCost": 5000,
        }
    assert access_events == 0


async def test_a_fragment_bomb_is_refused_at_once(settings: Settings) -> None:
    aliased = FRAGMENT_BOMB.replace("{ viewer {", "{ a: viewer {")
    async with api(settings) as http:
        started = time.perf_counter()
        by_cost = await post(http, FRAGMENT_BOMB)
        by_aliases = await post(http, aliased)
        elapsed = time.perf_counter() - started

    assert by_cost.json()["errors"][0]["extensions"] == {
        "code": "QUERY_TOO_COMPLEX",
        "cost": 2**22,
        "maxCost": 5000,
    }
    assert by_aliases.json()["errors"][0]["message"] == f"{2**22} aliases found. Allowed: 15"
    assert elapsed < 5  # strawberry's limiters walked every spread: over a minute here


async def test_a_subscription_over_the_cost_limit_is_refused_on_the_websocket(
    settings: Settings,
) -> None:
    heavy = """subscription { messageReceived { conversation {
      messages(first: 4997) { edges { node { id } } } } } }"""
    app = create_app(settings)
    async with app.router.lifespan_context(app), asgi_websocket(app) as (socket, _):
        holder = await make_patient()
        await socket.send_json(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {holder.token}"}}
        )
        assert (await socket.receive_json())["type"] == "connection_ack"
        payload = {"query": heavy}
        await socket.send_json({"id": "1", "type": "subscribe", "payload": payload})
        answer = await socket.receive_json()

    # messageReceived 1, conversation 1, messages 1, edges 1, and 4997 nodes.
    assert answer == {
        "id": "1",
        "type": "error",
        "payload": [
            {
                "message": "The estimated cost of this operation, 5001, is over the 5000 allowed.",
                "extensions": {"code": "QUERY_TOO_COMPLEX", "cost": 5001, "maxCost": 5000},
            }
        ],
    }


# --- a schema of strawberry's own, with the directives --------------------------------------


@strawberry.type
class Film:
    title: str


@strawberry.type
class FilmConnection:
    edges: list[Film]


@strawberry.type
class Query:
    @strawberry.field(
        directives=[ListSize(slicing_arguments=["first", "last"], sized_fields=["edges"])]
    )
    def films(self, first: int | None = None, last: int | None = None) -> FilmConnection:
        return FilmConnection(edges=[Film(title="Nosferatu")] * (first or last or 0))


FILM_SCHEMA = strawberry.Schema(Query, extensions=[MaskInternalErrors, *limit_extensions()])


async def test_a_field_needing_one_slicing_argument_refuses_none_as_bad_input() -> None:
    given = await FILM_SCHEMA.execute("{ films(first: 1) { edges { title } } }")
    missing = await FILM_SCHEMA.execute("{ films { edges { title } } }")

    assert given.data == {"films": {"edges": [{"title": "Nosferatu"}]}}
    assert missing.data is None
    [error] = missing.errors or []
    assert error.message == "`Query.films` takes exactly one of `first`, `last`."
    assert error.extensions == {"code": "BAD_USER_INPUT"}


# --- settings ---------------------------------------------------------------------------


def test_the_limits_default_to_graphql_armors_but_depth() -> None:
    settings = Settings.from_env({"ENVIRONMENT": "test", "SECRET_KEY": "k" * 40})

    assert (
        settings.max_query_cost,
        settings.max_query_depth,
        settings.max_aliases,
        settings.max_tokens,
        settings.max_directives,
    ) == (5000, 10, 15, 1000, 50)


@pytest.mark.parametrize(
    "name", ["MAX_QUERY_COST", "MAX_QUERY_DEPTH", "MAX_ALIASES", "MAX_TOKENS", "MAX_DIRECTIVES"]
)
def test_each_limit_is_a_setting_and_must_be_positive(name: str) -> None:
    env = {"ENVIRONMENT": "test", "SECRET_KEY": "k" * 40}
    attribute = {"MAX_QUERY_COST": "max_query_cost", "MAX_QUERY_DEPTH": "max_query_depth"}.get(
        name, name.lower()
    )

    assert getattr(Settings.from_env({**env, name: "7"}), attribute) == 7
    with pytest.raises(ConfigError, match=f"{name} must be a positive integer"):
        Settings.from_env({**env, name: "0"})
