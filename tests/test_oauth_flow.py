"""A partner app's whole OAuth 2.1 flow, driven by a real OAuth client library (Authlib's
httpx client) acting as the app, against the real application: the patient grants through
grantAppAccess, the app fetches its tokens, runs a registered document, refreshes, and
revokes."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import httpx
import pytest
from authlib.deprecate import AuthlibDeprecationWarning

from api.app import create_app
from api.config import Settings
from models.audit import AccessAction, AccessBasis, AccessEvent, ActorRole
from models.catalogue import AppGrant, AppToken
from resolvers.ids import decode_as
from tests.catalogue_support import (
    BASE,
    REDIRECT,
    Service,
    register_app,
    service,
)
from tests.factories import make_operator, make_patient
from tests.graphql import gql

with warnings.catch_warnings():
    # Authlib's httpx integration prefers the httpx2 fork and says so on import; httpx is
    # what this project uses.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

__all__ = ["service"]

PROFILE = "query Profile { viewer { ... on PartnerApp { name actingFor { firstName lastName } } } }"
AGENDA = (
    "query Agenda { viewer { ... on PartnerApp { actingFor { appointments(first: 10) "
    "{ totalCount } } } } }"
)
SCOPES = "IDENTITY_READ APPOINTMENTS_READ"


def oauth_client(service: Service, client_id: str, secret: str | None) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=client_id,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        revocation_endpoint_auth_method="client_secret_basic" if secret else "none",
        scope=SCOPES,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        base_url=BASE,
        transport=httpx.ASGITransport(app=service.app, client=("127.0.0.9", 4242)),
    )


async def _consent(service: Service, patient_token: str, authorization_url: str) -> str:
    """The first-party front end: it reads the app's request off the authorisation URL,
    shows the consent screen, and calls grantAppAccess; the browser goes to `redirectTo`."""
    params = httpx.URL(authorization_url).params
    assert params["response_type"] == "code"
    granted = await gql(
        service.http,
        "mutation($input: GrantAppAccessInput!) { grantAppAccess(input: $input) { redirectTo } }",
        {
            "input": {
                "clientId": params["client_id"],
                "redirectUri": params["redirect_uri"],
                "scopes": params["scope"].split(),
                "state": params["state"],
                "codeChallenge": params["code_challenge"],
                "codeChallengeMethod": params["code_challenge_method"],
            }
        },
        token=patient_token,
    )
    return str(granted.ok()["grantAppAccess"]["redirectTo"])


async def _run(client: AsyncOAuth2Client, document: str) -> dict[str, Any]:
    response = await client.post("/graphql", json={"documentId": document})
    return dict(response.json())


@pytest.mark.parametrize("confidential", [True, False], ids=["confidential", "public"])
async def test_an_app_walks_the_whole_flow_with_an_oauth_client_library(
    service: Service, confidential: bool
) -> None:
    # given an appointment platform in the catalogue, with its documents, and a patient
    operator = await make_operator()
    app = await register_app(
        service.http,
        operator.token,
        scopes=["IDENTITY_READ", "APPOINTMENTS_READ", "APPOINTMENTS_WRITE"],
        documents={"profile": PROFILE, "agenda": AGENDA},
        confidential=confidential,
    )
    patient = await make_patient("Camille", "Durand")
    assert patient.token is not None
    client = oauth_client(service, app.client_id, app.secret)
    well_known = "/.well-known/oauth-authorization-server"
    metadata = (await client.request("GET", well_known, withhold_token=True)).json()
    verifier = "v" * 20 + "-verifier-of-the-app-" + "x" * 20

    # when the app sends the patient to the consent screen, the patient agrees, and the app
    # takes its code to the token endpoint
    url, state = client.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier
    )
    redirect_to = await _consent(service, patient.token, url)
    token = await client.fetch_token(
        metadata["token_endpoint"], authorization_response=redirect_to, code_verifier=verifier
    )
    profile = await _run(client, app.documents["profile"])

    # then it holds tokens of the contract's shape, and acts for the patient
    assert httpx.URL(redirect_to).params["state"] == state
    assert str(redirect_to).startswith(REDIRECT + "?code=")
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 600
    assert token["scope"] == SCOPES
    assert token["refresh_token"]
    assert profile == {
        "data": {
            "viewer": {
                "name": "Rendez-vous Santé",
                "actingFor": {"firstName": "Camille", "lastName": "Durand"},
            }
        }
    }
    (event,) = await AccessEvent.filter(patient_id=patient.patient.id)
    assert event.actor_id == decode_as(app.id, "PartnerApp")
    assert (event.actor_role, event.basis, event.action) == (
        ActorRole.PARTNER_APP,
        AccessBasis.APP,
        AccessAction.READ,
    )

    # when the app refreshes its tokens
    old = dict(token)
    refreshed = await client.refresh_token(metadata["token_endpoint"])
    agenda = await _run(client, app.documents["agenda"])

    # then both are new, the old access token is dead, and the new one works
    assert refreshed["access_token"] != old["access_token"]
    assert refreshed["refresh_token"] != old["refresh_token"]
    assert agenda == {"data": {"viewer": {"actingFor": {"appointments": {"totalCount": 0}}}}}
    stale = await service.http.post(
        "/graphql",
        json={"documentId": app.documents["profile"]},
        headers={"Authorization": f"Bearer {old['access_token']}"},
    )
    assert stale.status_code == 401

    # when the app revokes its refresh token (RFC 7009)
    revoked = await client.revoke_token(
        metadata["revocation_endpoint"],
        token=refreshed["refresh_token"],
        token_type_hint="refresh_token",
    )

    # then the grant is over: its access token stops working at once, and no refresh
    assert revoked.status_code == 200
    after = await _run(client, app.documents["profile"])
    assert [e["extensions"]["code"] for e in after["errors"]] == ["UNAUTHENTICATED"]
    with pytest.raises(OAuthError) as refused:
        await client.refresh_token(metadata["token_endpoint"])
    assert refused.value.error == "invalid_grant"
    (grant,) = await AppGrant.all()
    assert grant.revoked_at is not None
    assert not await AppToken.filter(revoked_at=None).exists()
    await client.aclose()


async def test_the_metadata_document_describes_the_server(service: Service) -> None:
    # when a client library looks the server up (RFC 8414)
    response = await service.http.get("/.well-known/oauth-authorization-server")

    # then it finds the endpoints and what they accept, and nothing more
    assert response.status_code == 200
    assert response.json() == {
        "issuer": BASE,
        "authorization_endpoint": f"{BASE}/oauth/authorize",
        "token_endpoint": f"{BASE}/oauth/token",
        "revocation_endpoint": f"{BASE}/oauth/revoke",
        "scopes_supported": [
            "IDENTITY_READ",
            "DOCUMENTS_READ",
            "DOCUMENTS_WRITE",
            "HEALTH_PROFILE_READ",
            "VACCINATIONS_READ",
            "APPOINTMENTS_READ",
            "APPOINTMENTS_WRITE",
        ],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "code_challenge_methods_supported": ["S256"],
        "service_documentation": f"{BASE}/graphql",
    }


async def test_the_authorization_endpoint_leads_to_the_front_ends_consent_screen(
    settings: Settings,
) -> None:
    # given the service with a front end, and one without
    query = "response_type=code&client_id=rdv-1&scope=IDENTITY_READ&state=s&code_challenge=c"
    answers = []
    for frontend in ("https://front.example", None):
        app = create_app(replace(settings, frontend_url=frontend))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
                # when an app sends the browser to the authorization endpoint
                answers.append(await http.get(f"/oauth/authorize?{query}"))

    # then the browser goes to the consent screen with the app's request, or finds nothing
    assert answers[0].status_code == 302
    assert answers[0].headers["location"] == f"https://front.example/oauth/authorize?{query}"
    assert answers[1].status_code == 404
    assert answers[1].json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
