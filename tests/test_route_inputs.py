"""Finding 14's kind beyond GraphQL (review issue 9): the HTTP routes outside /graphql
(document and attachment bytes, the FHIR export, the calendar feed, partner apps' OAuth
endpoints) answer awkward path and form values (longer than any column, a NUL, wide
characters, a path traversal, an id of another type) with a 4xx, never a 5xx.

tests/e2e/test_fuzz.py fuzzes the GraphQL schema; these routes are not in it.
"""

from __future__ import annotations

import base64
from urllib.parse import quote
from uuid import UUID

import httpx
import pytest

from resolvers.ids import encode
from tests.factories import make_patient

AWKWARD = [
    "",
    " ",
    "x" * 5000,
    "\x00",
    "a\x00b",
    "été-ü-漢字-😀",
    "../../etc/passwd",
    "-1",
    "0" * 64,
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    encode("Patient", UUID(int=0)),  # an id of another type
    base64.urlsafe_b64encode(b"Document:not-a-uuid").decode(),
    "UGF0aWVudDo=",  # "Patient:" in base64
    "%",
]


def _path_value(value: str) -> str:
    return quote(value, safe="")


@pytest.mark.parametrize("value", AWKWARD, ids=range(len(AWKWARD)))
@pytest.mark.parametrize(
    "route",
    [
        "/documents/{}/content",
        "/attachments/{}/content",
        "/export/{}.fhir.json",
        "/calendar/{}.ics",
    ],
)
@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "patient"])
async def test_a_content_route_answers_an_awkward_path_value_without_a_server_error(
    client: httpx.AsyncClient, route: str, value: str, signed_in: bool
) -> None:
    headers = {}
    if signed_in:
        alice = await make_patient()
        headers["Authorization"] = f"Bearer {alice.token}"

    response = await client.get(route.format(_path_value(value)), headers=headers)

    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])


FORMS = [
    {"grant_type": "authorization_code", "code": "{}", "client_id": "{}", "code_verifier": "{}"},
    {"grant_type": "authorization_code", "code": "{}", "redirect_uri": "{}", "client_id": "c"},
    {"grant_type": "refresh_token", "refresh_token": "{}", "client_id": "{}"},
    {"grant_type": "{}", "client_id": "{}"},
]


@pytest.mark.parametrize("value", AWKWARD, ids=range(len(AWKWARD)))
@pytest.mark.parametrize("form", FORMS, ids=range(len(FORMS)))
async def test_the_token_endpoint_answers_awkward_values_without_a_server_error(
    client: httpx.AsyncClient, form: dict[str, str], value: str
) -> None:
    data = {key: field.format(value) for key, field in form.items()}

    response = await client.post("/oauth/token", data=data)

    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])


@pytest.mark.parametrize("value", AWKWARD, ids=range(len(AWKWARD)))
async def test_revocation_and_authorization_answer_awkward_values_without_a_server_error(
    client: httpx.AsyncClient, value: str
) -> None:
    revoked = await client.post("/oauth/revoke", data={"token": value, "client_id": value})
    params = {
        "response_type": "code",
        "client_id": value,
        "redirect_uri": value,
        "code_challenge": value,
        "code_challenge_method": "S256",
        "state": value,
        "scope": value,
    }
    authorized = await client.get("/oauth/authorize", params=params)

    assert revoked.status_code < 500, (revoked.status_code, revoked.text[:200])
    assert authorized.status_code < 500, (authorized.status_code, authorized.text[:200])
