"""Internal errors found by fuzzing the live schema (tests/e2e/test_fuzz.py) and by probing
the same kind of input by hand (review finding 14: "there may be more of its kind"), each
pinned through the API: a client's made-up input answers a coded error, never an internal
one. Finding 14 itself: tests/test_directory_search.py."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.factories import make_patient, make_professional
from tests.graphql import gql


def cursor(values: list[Any]) -> str:
    """A cursor as the API makes them (base64url of the JSON sort key), with any values."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


# --- page cursors -----------------------------------------------------------------------

SPACE_LISTS = """query($id: ID!, $after: String) { patient(id: $id) {
  documents(after: $after) { totalCount }
  accessLog(after: $after) { totalCount }
  appointments(after: $after) { totalCount }
  reminders(after: $after) { totalCount }
  conversations(after: $after) { totalCount }
} }"""
DASHBOARD = """query($id: ID!, $after: String) { node(id: $id) { ... on Professional {
  patients(after: $after) { totalCount } } } }"""
LISTS = ["accessLog", "appointments", "conversations", "documents", "reminders"]
ID = str(uuid.UUID(int=1))


@pytest.mark.parametrize(
    "moment",
    [
        "2024-01-01T00:00:00",  # no offset
        "2024-01-01",  # a date where a moment is expected
        "9999-12-31T23:59:59-23:59",  # after the calendar's end in UTC
        "0001-01-01T00:00:00+14:00",  # before its start
    ],
)
async def test_a_made_up_moment_in_a_cursor_is_bad_user_input(
    client: httpx.AsyncClient, moment: str
) -> None:
    # given a patient, and a cursor of her lists' shape holding a moment they cannot hold
    alice = await make_patient()

    # when she pages her lists after it (documents: date, moment, id; others: moment, id)
    result = await gql(
        client,
        SPACE_LISTS,
        {"id": alice.id, "after": cursor([moment, ID])},
        token=alice.token,
    )
    documents = await gql(
        client,
        SPACE_LISTS,
        {"id": alice.id, "after": cursor(["2024-01-01", moment, ID])},
        token=alice.token,
    )

    # then every list answers BAD_USER_INPUT on `after`, none an internal error
    for answer in (result, documents):
        assert sorted(e["path"][1] for e in answer.errors) == LISTS
        assert {e["extensions"]["code"] for e in answer.errors} == {"BAD_USER_INPUT"}
        assert {e["extensions"]["field"] for e in answer.errors} == {"after"}
        assert answer.data == {"patient": dict.fromkeys(LISTS)}


@pytest.mark.parametrize(
    "last_name",
    ["x" * 101, "Martin\x00"],  # longer than the column; a NUL
)
async def test_a_made_up_name_in_a_dashboard_cursor_is_bad_user_input(
    client: httpx.AsyncClient, last_name: str
) -> None:
    # given a professional, and a cursor of the dashboard's shape (last name, first name, id)
    doc = await make_professional()

    # when the professional pages the dashboard after a name no patient can have
    result = await gql(
        client,
        DASHBOARD,
        {"id": doc.id, "after": cursor([last_name, "Alice", ID])},
        token=doc.token,
    )

    # then the answer is BAD_USER_INPUT on `after`
    assert result.data == {"node": {"patients": None}}
    assert [(e["path"], e["extensions"]) for e in result.errors] == [
        (["node", "patients"], {"code": "BAD_USER_INPUT", "field": "after"})
    ]


async def test_a_real_cursor_still_pages_the_dashboard(client: httpx.AsyncClient) -> None:
    # given a professional whom two patients consented to
    doc = await make_professional()
    query = """query($id: ID!, $after: String) { node(id: $id) { ... on Professional {
      patients(first: 1, after: $after) { edges { cursor node { lastName } } } } } }"""
    grant = """mutation($input: GrantConsentInput!) { grantConsent(input: $input) {
      consent { id } } }"""
    for name in ("Dupont", "Lefebvre"):
        person = await make_patient(last_name=name)
        variables = {"input": {"professionalId": doc.id, "access": "READ"}}
        assert not (await gql(client, grant, variables, token=person.token)).errors

    # when the professional reads the first page, then the page after its cursor
    first = (await gql(client, query, {"id": doc.id}, token=doc.token)).ok()
    edge = first["node"]["patients"]["edges"][0]
    after = {"id": doc.id, "after": edge["cursor"]}
    second = (await gql(client, query, after, token=doc.token)).ok()

    # then each page holds the next patient by name
    assert edge["node"]["lastName"] == "Dupont"
    assert [e["node"]["lastName"] for e in second["node"]["patients"]["edges"]] == ["Lefebvre"]


# --- NUL characters ---------------------------------------------------------------------

SCREENING = """mutation($input: RecordScreeningInput!) {
  recordScreening(input: $input) { screening { id } } }"""
SCREENING_LITERAL = """mutation { recordScreening(input: {kind: BREAST, date: "2024-03-01",
  result: "normal\\u0000"}) { screening { id } } }"""
SCREENINGS = "query($id: ID!) { patient(id: $id) { screenings { id } } }"
DIRECTORY = "query($search: String!) { professionals(search: $search) { id } }"


async def test_a_nul_character_in_text_is_bad_user_input_and_nothing_is_written(
    client: httpx.AsyncClient,
) -> None:
    # given a patient (PostgreSQL cannot store a NUL in text; SQLite stored it)
    alice = await make_patient()
    screening = {"kind": "BREAST", "date": "2024-03-01", "result": "normal\x00"}

    # when she records a screening whose result holds a NUL, in a variable and literally,
    # and searches the directory with one
    in_variable = await gql(client, SCREENING, {"input": screening}, token=alice.token)
    literal = await gql(client, SCREENING_LITERAL, token=alice.token)
    search = await gql(client, DIRECTORY, {"search": "du\x00pont"}, token=alice.token)

    # then each answers BAD_USER_INPUT naming the input, and nothing was recorded
    assert [(e["extensions"], in_variable.data) for e in in_variable.errors] == [
        ({"code": "BAD_USER_INPUT", "field": "result"}, None)
    ]
    assert [(e["extensions"], literal.data) for e in literal.errors] == [
        ({"code": "BAD_USER_INPUT", "field": "result"}, None)
    ]
    assert [(e["extensions"], search.data) for e in search.errors] == [
        ({"code": "BAD_USER_INPUT", "field": "search"}, None)
    ]
    assert in_variable.errors[0]["message"] == "Text cannot contain a NUL character."
    stored = await gql(client, SCREENINGS, {"id": alice.id}, token=alice.token)
    assert stored.ok() == {"patient": {"screenings": []}}


# --- log-in -----------------------------------------------------------------------------

LOGIN = """mutation($input: LoginInput!) { login(input: $input) { token } }"""


async def test_an_e_mail_longer_than_any_account_s_fails_to_log_in_as_an_unknown_one(
    client: httpx.AsyncClient,
) -> None:
    # given an address longer than the column of accounts' e-mails (254 characters)
    email = "a" * 250 + "@example.org"

    # when someone logs in with it, and with an unknown address of ordinary length
    long = await gql(client, LOGIN, {"input": {"email": email, "password": "whatever"}})
    unknown = await gql(
        client, LOGIN, {"input": {"email": "nobody@example.org", "password": "whatever"}}
    )

    # then both answer the same UNAUTHENTICATED failure
    assert long.codes == ["UNAUTHENTICATED"]
    assert long.data is None
    assert long.errors[0]["message"] == unknown.errors[0]["message"]
    assert long.errors[0]["extensions"] == unknown.errors[0]["extensions"]
