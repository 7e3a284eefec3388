"""`@postOnly` fields (resolvers/post_only.py): `patientByNir` is refused over GET, whatever
the document hides it in (an alias, a fragment, a persisted document named by its id or its
APQ hash), with 405 and `Allow: POST` as a mutation over GET; it runs nothing, registers
nothing, and POST still serves it."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
import strawberry
from graphql import parse

from api.extensions.post_only import PostOnlyFields, Selected
from api.schema import schema, schema_sdl
from models.audit import AccessEvent
from models.persisted import DocumentRegistration
from resolvers.post_only import PostOnly
from tests.factories import Person, make_patient, make_professional
from tests.graphql import gql

BY_NIR = "query($n: String!, $d: Date!) { patientByNir(nir: $n, birthDate: $d) { id } }"
ALIASED = "query($n: String!, $d: Date!) { who: patientByNir(nir: $n, birthDate: $d) { id } }"
IN_FRAGMENT = """query($n: String!, $d: Date!) { ...Find }
fragment Find on Query { patientByNir(nir: $n, birthDate: $d) { id } }"""
IN_INLINE_FRAGMENT = """query($n: String!, $d: Date!) {
  ... on Query { viewer { __typename } patientByNir(nir: $n, birthDate: $d) { id } } }"""
IN_OTHER_OPERATION = """query Me { viewer { __typename } }
query Find($n: String!, $d: Date!) { patientByNir(nir: $n, birthDate: $d) { id } }"""
VIEWER = "query { viewer { __typename } }"

MESSAGE = (
    "Query.patientByNir is served over POST only: send this operation in a POST body. "
    "A NIR never sits in a URL or in a proxy's access log."
)
REFUSED = {"errors": [{"message": MESSAGE, "extensions": {"code": "BAD_USER_INPUT"}}]}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq(text: str) -> str:
    return json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}})


def variables_of(person: Person) -> str:
    return json.dumps({"n": person.nir, "d": person.patient.birth_date.isoformat()})


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    assert response.json() == REFUSED


async def lookups(person: Person) -> int:
    return await AccessEvent.filter(patient_id=person.patient.id).count()


@pytest.mark.parametrize(
    ("query", "operation"),
    [
        (BY_NIR, None),
        (ALIASED, None),
        (IN_FRAGMENT, None),
        (IN_INLINE_FRAGMENT, None),
        (IN_OTHER_OPERATION, "Find"),
        (IN_OTHER_OPERATION, "Me"),  # the document holds it: its text is in the URL all the same
    ],
)
async def test_patient_by_nir_over_get_is_405_and_runs_nothing(
    client: httpx.AsyncClient, query: str, operation: str | None
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    params = {"query": query, "variables": variables_of(alice)}
    if operation is not None:
        params["operationName"] = operation

    response = await client.get(
        "/graphql", params=params, headers={"Authorization": f"Bearer {doc.token}"}
    )

    assert_refused(response)
    assert await lookups(alice) == 0


async def test_the_refusal_comes_before_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": BY_NIR})

    assert_refused(response)


async def test_a_persisted_patient_by_nir_over_get_is_405(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    auth = {"Authorization": f"Bearer {doc.token}"}
    registered = await client.post(
        "/graphql",
        json={
            "query": BY_NIR,
            "variables": json.loads(variables_of(alice)),
            "extensions": json.loads(apq(BY_NIR)),
        },
        headers=auth,
    )
    assert registered.status_code == 200, registered.text
    assert registered.json() == {"data": {"patientByNir": {"id": alice.id}}}
    assert await lookups(alice) == 1

    by_id = await client.get(
        "/graphql",
        params={"documentId": f"sha256:{sha256(BY_NIR)}", "variables": variables_of(alice)},
        headers=auth,
    )
    by_hash = await client.get(
        "/graphql",
        params={"extensions": apq(BY_NIR), "variables": variables_of(alice)},
        headers=auth,
    )

    assert_refused(by_id)
    assert_refused(by_hash)
    assert await lookups(alice) == 1


async def test_an_apq_registration_over_get_is_refused_and_registers_nothing(
    client: httpx.AsyncClient,
) -> None:
    doc = await make_professional()
    literal = '{ patientByNir(nir: "180037512345678", birthDate: "1980-03-14") { id } }'

    response = await client.get(
        "/graphql",
        params={"query": literal, "extensions": apq(literal)},
        headers={"Authorization": f"Bearer {doc.token}"},
    )

    assert_refused(response)
    assert await DocumentRegistration.all().count() == 0


async def test_post_still_serves_patient_by_nir_and_get_other_queries(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()

    posted = await gql(client, ALIASED, json.loads(variables_of(alice)), token=doc.token)
    got = await client.get(
        "/graphql", params={"query": VIEWER}, headers={"Authorization": f"Bearer {doc.token}"}
    )

    assert posted.ok() == {"who": {"id": alice.id}}
    assert got.status_code == 200, got.text
    assert got.json() == {"data": {"viewer": {"__typename": "Professional"}}}


def test_the_schema_marks_patient_by_nir_post_only() -> None:
    sdl = schema_sdl()

    assert "directive @postOnly(reason: String!) on FIELD_DEFINITION" in sdl
    assert '@postOnly(reason: "A NIR never sits in a URL or in a proxy\'s access log.")' in sdl
    assert PostOnlyFields(schema._schema).marked == {
        ("Query", "patientByNir"): "A NIR never sits in a URL or in a proxy's access log."
    }


# --- the mechanism, on a schema of its own -------------------------------------------------

SECRET = PostOnly(reason="Secret.")


@strawberry.interface
class Holder:
    secret: str = strawberry.field(description="A secret.")


@strawberry.type
class Vault(Holder):
    secret: str = strawberry.field(description="A secret.", directives=[SECRET])


@strawberry.type
class Note:
    secret: str = strawberry.field(description="Not marked: the same name on another type.")


@strawberry.type
class SmallQuery:
    @strawberry.field
    def holder(self) -> Holder:
        return Vault(secret="s")

    @strawberry.field
    def note(self) -> Note:
        return Note(secret="n")


def small() -> PostOnlyFields:
    return PostOnlyFields(strawberry.Schema(query=SmallQuery, types=[Vault])._schema)


def test_the_mechanism_matches_fields_on_their_type_and_interfaces() -> None:
    fields = small()

    assert fields.marked == {("Vault", "secret"): "Secret.", ("Holder", "secret"): "Secret."}
    assert fields.selected("{ note { secret } }", None) is None
    assert fields.selected("{ holder { secret } }", None) == Selected("Holder.secret", "Secret.")
    assert fields.selected("{ holder { ... on Vault { s: secret } } }", None) == Selected(
        "Vault.secret", "Secret."
    )
    assert fields.selected("{ holder { ...V } } fragment V on Vault { secret }", None) == (
        Selected("Vault.secret", "Secret.")
    )


def test_a_document_that_does_not_parse_is_left_to_the_schema() -> None:
    fields = small()

    assert fields.selected("{ holder { secret ", None) is None
    assert fields.selected("{ holder { secret } }", 3) is None  # past the token limit
    parse("{ holder { secret } }")  # (the same text parses without the limit)


def test_a_schema_without_post_only_fields_checks_nothing() -> None:
    fields = PostOnlyFields(strawberry.Schema(query=Note)._schema)

    assert fields.marked == {}
    assert fields.selected("{ secret }", None) is None
