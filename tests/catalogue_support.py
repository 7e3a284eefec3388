"""Partner apps as tests meet them: referenced by an operator, granted by a patient through
grantAppAccess, tokens from POST /oauth/token, documents sent by their id."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from api.app import create_app
from api.config import Settings
from models.audit import AccessEvent
from models.catalogue import AppGrant, AppToken, AuthorizationCode
from models.persisted import sha256_hex
from tests.graphql import GraphQLResult, gql

REDIRECT = "https://rdv.example/oauth/callback"
BASE = "http://testserver"

REGISTER = """
mutation($input: RegisterPartnerAppInput!) {
  registerPartnerApp(input: $input) { app { id name } clientId clientSecret }
}
"""
GRANT = """
mutation($input: GrantAppAccessInput!) { grantAppAccess(input: $input) { redirectTo } }
"""


@dataclass
class Service:
    app: Starlette
    http: httpx.AsyncClient


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    """The app and a client of it; the app itself too, for an OAuth client library to use."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            yield Service(app, http)


@dataclass
class App:
    id: str
    client_id: str
    secret: str | None
    documents: dict[str, str]  # name -> documentId

    def basic(self) -> httpx.BasicAuth:
        assert self.secret is not None
        return httpx.BasicAuth(self.client_id, self.secret)


def document_id(text: str) -> str:
    return "sha256:" + sha256_hex(text)


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def register_app(
    http: httpx.AsyncClient,
    operator_token: str,
    *,
    scopes: list[str],
    documents: dict[str, str] | None = None,
    confidential: bool = True,
    name: str = "Rendez-vous Santé",
    redirect_uris: list[str] | None = None,
) -> App:
    documents = documents or {}
    result = await gql(
        http,
        REGISTER,
        {
            "input": {
                "name": name,
                "description": "Prise de rendez-vous en ligne.",
                "homepage": "https://rdv.example",
                "redirectUris": redirect_uris or [REDIRECT],
                "scopes": scopes,
                "confidential": confidential,
                "documents": list(documents.values()),
            }
        },
        token=operator_token,
    )
    payload = result.ok()["registerPartnerApp"]
    return App(
        id=payload["app"]["id"],
        client_id=payload["clientId"],
        secret=payload["clientSecret"],
        documents={name: document_id(text) for name, text in documents.items()},
    )


async def grant(
    http: httpx.AsyncClient,
    patient_token: str,
    app: App,
    *,
    scopes: list[str],
    challenge: str,
    state: str = "xyz",
    redirect_uri: str = REDIRECT,
    method: str = "S256",
    patient_id: str | None = None,
) -> GraphQLResult:
    variables: dict[str, Any] = {
        "clientId": app.client_id,
        "redirectUri": redirect_uri,
        "scopes": scopes,
        "state": state,
        "codeChallenge": challenge,
        "codeChallengeMethod": method,
    }
    if patient_id is not None:
        variables["patientId"] = patient_id
    return await gql(http, GRANT, {"input": variables}, token=patient_token)


def code_of(redirect_to: str) -> str:
    query = httpx.URL(redirect_to).params
    return str(query["code"])


async def token_request(
    http: httpx.AsyncClient, app: App, form: dict[str, str], *, basic: bool = True
) -> httpx.Response:
    data = dict(form)
    auth: httpx.BasicAuth | None = None
    if app.secret is not None and basic:
        auth = app.basic()
    elif app.secret is None:
        data["client_id"] = app.client_id
    if auth is None:
        return await http.post("/oauth/token", data=data)
    return await http.post("/oauth/token", data=data, auth=auth)


async def exchange(
    http: httpx.AsyncClient,
    app: App,
    code: str,
    verifier: str,
    *,
    redirect_uri: str = REDIRECT,
) -> httpx.Response:
    return await token_request(
        http,
        app,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
    )


async def connect(
    http: httpx.AsyncClient,
    patient_token: str,
    app: App,
    *,
    scopes: list[str],
    patient_id: str | None = None,
) -> dict[str, Any]:
    """The whole dance: the patient grants, the app exchanges its code; the token answer."""
    verifier, challenge = pkce()
    granted = await grant(
        http, patient_token, app, scopes=scopes, challenge=challenge, patient_id=patient_id
    )
    redirect_to = granted.ok()["grantAppAccess"]["redirectTo"]
    response = await exchange(http, app, code_of(redirect_to), verifier)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def run(
    http: httpx.AsyncClient,
    token: str,
    document: str,
    variables: dict[str, Any] | None = None,
) -> GraphQLResult:
    """A request as an app sends it: a registered document by its id."""
    body: dict[str, Any] = {"documentId": document}
    if variables:
        body["variables"] = variables
    response = await http.post("/graphql", json=body, headers={"Authorization": f"Bearer {token}"})
    return GraphQLResult(response)


async def catalogue_state() -> tuple[Any, ...]:
    """Everything a refused request must leave as it was."""
    grants = await AppGrant.all().order_by("id").values_list("id", "revoked_at", "scopes")
    tokens = await AppToken.all().order_by("id").values_list("id", "revoked_at", "rotated_at")
    codes = await AuthorizationCode.all().order_by("id").values_list("id", "used_at")
    events = await AccessEvent.all().count()
    return (grants, tokens, codes, events)
