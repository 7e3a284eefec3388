"""What issue 11 asks of the OAuth side that the first tests left implicit: secrets, codes and
tokens kept only as keyed hashes; the lifetimes of codes and tokens; both authentication
methods of a confidential client, and the refusals of the wrong ones; a refresh that asks
for more than the grant (invalid_scope), or comes after its 30 days; RFC 7009 revocation of
an access token, of an unknown token, of another app's token; documents loaded for an app
from a manifest (`documents load --client`); and an app token that names another patient
(node, nodes, the content route, a booking) or tries the holder's or an operator's
mutations. Each refusal changes nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from api.config import Settings
from models.appointment import Appointment
from models.audit import AccessEvent
from models.base import utcnow
from models.catalogue import (
    ACCESS_TOKEN_TTL,
    CODE_TTL,
    REFRESH_TOKEN_TTL,
    AppGrant,
    AppToken,
    AuthorizationCode,
    PartnerApp,
    digest,
)
from models.persisted import sha256_hex
from tests.blob_support import cli
from tests.catalogue_support import (
    REDIRECT,
    App,
    Service,
    catalogue_state,
    code_of,
    connect,
    exchange,
    grant,
    pkce,
    register_app,
    run,
    service,
    token_request,
)
from tests.factories import make_operator, make_patient, make_professional
from tests.graphql import gql
from tests.matrix_support import _upload, pdf

__all__ = ["service"]

ME = "query Me { viewer { ... on PartnerApp { actingFor { id firstName } } } }"
NODE = "query Node($id: ID!) { node(id: $id) { id } }"
NODES = "query Nodes($ids: [ID!]!) { nodes(ids: $ids) { id } }"
DOCUMENTS = {"me": ME, "node": NODE, "nodes": NODES}
BOOK = (
    "mutation($input: CreateAppointmentInput!) { createAppointment(input: $input) "
    "{ appointment { id } } }"
)


async def _rows() -> list[Any]:
    """Every stored value of the catalogue's tables."""
    rows: list[Any] = []
    for model in (PartnerApp, AppGrant, AuthorizationCode, AppToken):
        rows += await model.all().values()
    return rows


async def test_secrets_codes_and_tokens_are_stored_only_as_keyed_hashes(
    service: Service,
) -> None:
    # given a confidential app, a code, its tokens and their rotation
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    patient = await make_patient()
    assert patient.token is not None and app.secret is not None
    verifier, challenge = pkce()
    granted = await grant(
        service.http, patient.token, app, scopes=["IDENTITY_READ"], challenge=challenge
    )
    code = code_of(granted.ok()["grantAppAccess"]["redirectTo"])
    first = (await exchange(service.http, app, code, verifier)).json()
    second = (
        await token_request(
            service.http,
            app,
            {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        )
    ).json()
    plain = [
        app.secret,
        code,
        first["access_token"],
        first["refresh_token"],
        second["access_token"],
        second["refresh_token"],
    ]

    # when everything the catalogue stored is read back
    stored = repr(await _rows())

    # then none of them is there, not even in part: only their keyed hashes
    for value in plain:
        body = value.split(".", 1)[-1]  # without its kind prefix
        assert body[:16] not in stored, value
        assert sha256_hex(value) not in stored  # not an unkeyed hash either
    vault = service.app.state.services.vault
    row = await PartnerApp.get(client_id=app.client_id)
    assert row.client_secret_hash == digest(vault, app.secret, kind="secret")
    assert await AuthorizationCode.filter(code_hash=digest(vault, code, kind="code")).exists()
    for pair in (first, second):
        assert await AppToken.filter(
            access_hash=digest(vault, pair["access_token"], kind="access-token"),
            refresh_hash=digest(vault, pair["refresh_token"], kind="refresh-token"),
        ).exists()
    # and the secret is never answered again
    catalog = await gql(service.http, "{ catalog { clientId } }")
    assert app.secret not in catalog.response.text


async def test_codes_and_tokens_live_as_long_as_the_contract_says(service: Service) -> None:
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    patient = await make_patient()
    assert patient.token is not None

    tokens = await connect(service.http, patient.token, app, scopes=["IDENTITY_READ"])

    code = await AuthorizationCode.get()
    token = await AppToken.get()
    assert timedelta(minutes=10) >= CODE_TTL  # "short-lived"
    assert code.expires_at - code.created_at <= CODE_TTL + timedelta(seconds=1)
    assert token.access_expires_at - token.created_at <= ACCESS_TOKEN_TTL + timedelta(seconds=1)
    assert timedelta(minutes=10) >= ACCESS_TOKEN_TTL
    assert timedelta(days=30) == REFRESH_TOKEN_TTL
    assert token.refresh_expires_at - token.access_expires_at == REFRESH_TOKEN_TTL - (
        ACCESS_TOKEN_TTL
    )
    assert tokens["expires_in"] == 600
    assert tokens["token_type"] == "Bearer"


async def test_a_confidential_client_authenticates_by_basic_or_post_and_only_so(
    service: Service,
) -> None:
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    public = await register_app(
        service.http, operator.token, scopes=["IDENTITY_READ"], confidential=False
    )
    patient = await make_patient()
    assert patient.token is not None and app.secret is not None

    async def fresh_code(target: App) -> tuple[str, str]:
        verifier, challenge = pkce()
        granted = await grant(
            service.http, patient.token or "", target, scopes=["IDENTITY_READ"], challenge=challenge
        )
        return code_of(granted.ok()["grantAppAccess"]["redirectTo"]), verifier

    def form(code: str, verifier: str, **extra: str) -> dict[str, str]:
        return {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            **extra,
        }

    # refused: no secret at all, the secret of a confidential client left out of a public
    # style request, a secret for a public client
    code, verifier = await fresh_code(app)
    before = await catalogue_state()
    bare = await service.http.post(
        "/oauth/token", data=form(code, verifier, client_id=app.client_id)
    )
    public_code, public_verifier = await fresh_code(public)
    public_with_secret = await service.http.post(
        "/oauth/token",
        data=form(public_code, public_verifier, client_id=public.client_id, client_secret="x"),
    )
    assert (bare.status_code, bare.json()["error"]) == (401, "invalid_client")
    assert public_with_secret.status_code in (400, 401)
    assert public_with_secret.json()["error"] == "invalid_client"
    after = await catalogue_state()
    assert after[:2] == before[:2]  # no grant, no token (the second code is new, unused)

    # accepted: client_secret_post, then client_secret_basic
    posted = await service.http.post(
        "/oauth/token",
        data=form(code, verifier, client_id=app.client_id, client_secret=app.secret),
    )
    assert posted.status_code == 200, posted.text
    code, verifier = await fresh_code(app)
    basic = await exchange(service.http, app, code, verifier)
    assert basic.status_code == 200, basic.text


async def test_a_refresh_asking_for_more_than_the_grant_is_invalid_scope(
    service: Service,
) -> None:
    operator = await make_operator()
    app = await register_app(
        service.http,
        operator.token,
        scopes=["IDENTITY_READ", "APPOINTMENTS_READ"],
        documents={"me": ME},
    )
    patient = await make_patient()
    assert patient.token is not None
    tokens = await connect(service.http, patient.token, app, scopes=["IDENTITY_READ"])
    before = await catalogue_state()

    wider = await token_request(
        service.http,
        app,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "IDENTITY_READ APPOINTMENTS_READ",
        },
    )

    assert (wider.status_code, wider.json()["error"]) == (400, "invalid_scope")
    assert await catalogue_state() == before
    # the refresh token is still good (it was not used up by the refusal)
    same = await token_request(
        service.http,
        app,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert same.status_code == 200
    assert same.json()["scope"] == "IDENTITY_READ"


async def test_revocation_of_an_access_token_an_unknown_one_and_another_apps(
    service: Service,
) -> None:
    operator = await make_operator()
    app = await register_app(
        service.http, operator.token, scopes=["IDENTITY_READ"], documents={"me": ME}
    )
    other = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    patient = await make_patient()
    assert patient.token is not None
    tokens = await connect(service.http, patient.token, app, scopes=["IDENTITY_READ"])
    before = await catalogue_state()

    # an unknown token: 200, nothing changes (RFC 7009 §2.2)
    unknown = await service.http.post(
        "/oauth/revoke", data={"token": "at.nothing-of-ours"}, auth=app.basic()
    )
    # another app's client revoking this app's token: refused, nothing changes
    foreign = await service.http.post(
        "/oauth/revoke", data={"token": tokens["access_token"]}, auth=other.basic()
    )
    # no client authentication at all
    anonymous = await service.http.post("/oauth/revoke", data={"token": tokens["access_token"]})
    assert unknown.status_code == 200
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_grant"
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    assert await catalogue_state() == before
    assert (await run(service.http, tokens["access_token"], app.documents["me"])).ok()

    # the app revokes its access token: that token and its refresh token die at once
    revoked = await service.http.post(
        "/oauth/revoke",
        data={"token": tokens["access_token"], "token_type_hint": "access_token"},
        auth=app.basic(),
    )
    assert revoked.status_code == 200
    me = await run(service.http, tokens["access_token"], app.documents["me"])
    assert me.response.status_code == 401 and me.codes == ["UNAUTHENTICATED"]
    refresh = await token_request(
        service.http, app, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert refresh.json()["error"] == "invalid_grant"


async def test_an_app_finds_nothing_of_another_patient_by_id(service: Service) -> None:
    # given an app granted every read scope by one patient, and another patient's document
    # and appointment
    operator = await make_operator()
    scopes = ["IDENTITY_READ", "DOCUMENTS_READ", "APPOINTMENTS_READ"]
    app = await register_app(service.http, operator.token, scopes=scopes, documents=DOCUMENTS)
    patient = await make_patient("Camille", "Durand")
    other = await make_patient("Bruno", "Moreau")
    assert patient.token is not None and other.token is not None
    tokens = await connect(service.http, patient.token, app, scopes=scopes)
    document_id = await _upload(
        service.http, other.token, {"title": "Bilan", "category": "LAB_RESULT"}, pdf("other")
    )
    start = "2031-05-02T09:00:00+00:00"
    booked = await gql(
        service.http,
        BOOK,
        {"input": {"title": "Kiné", "startsAt": start, "endsAt": "2031-05-02T09:30:00+00:00"}},
        token=other.token,
    )
    appointment_id = booked.ok()["createAppointment"]["appointment"]["id"]
    access = tokens["access_token"]
    before = (
        await catalogue_state(),
        await AccessEvent.filter(patient_id=other.patient.id).count(),
    )

    # when it names them
    answers = [
        await run(service.http, access, app.documents["node"], {"id": object_id})
        for object_id in (document_id, appointment_id, other.id)
    ]
    listed = await run(
        service.http, access, app.documents["nodes"], {"ids": [document_id, appointment_id]}
    )
    content = await service.http.get(
        f"/documents/{document_id}/content", headers={"Authorization": f"Bearer {access}"}
    )

    # then it finds nothing, exactly as for ids that do not exist, and nothing is logged
    for answer in answers:
        assert answer.data == {"node": None}
        assert answer.codes == ["NOT_FOUND"]
    assert listed.data == {"nodes": [None, None]}
    assert set(listed.codes) == {"NOT_FOUND"}
    assert content.status_code == 404
    assert content.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    after = (await catalogue_state(), await AccessEvent.filter(patient_id=other.patient.id).count())
    assert after == before


async def test_documents_loaded_for_an_app_from_a_manifest_are_its_own(
    service: Service, settings: Settings, tmp_path: Path
) -> None:
    # given two apps, and a manifest (Relay's map: ids of the app's choosing) for the first
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    other = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    patient = await make_patient("Camille", "Durand")
    assert patient.token is not None
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"AppMe": ME}))

    # when the operator loads it onto the app's list
    loaded = await cli(settings, "documents", "load", str(manifest), "--client", app.client_id)

    # then the app runs it by its id or its hash, and the other app runs neither
    assert loaded[0] == 0, loaded
    assert f"added to the list of client {app.client_id}: 1" in loaded[1]
    mine = await connect(service.http, patient.token, app, scopes=["IDENTITY_READ"])
    theirs = await connect(service.http, patient.token, other, scopes=["IDENTITY_READ"])
    by_id = await run(service.http, mine["access_token"], "AppMe")
    by_hash = await run(service.http, mine["access_token"], "sha256:" + sha256_hex(ME))
    assert by_id.ok()["viewer"]["actingFor"]["firstName"] == "Camille"
    assert by_hash.ok() == by_id.ok()
    before = await catalogue_state()
    for document in ("AppMe", "sha256:" + sha256_hex(ME)):
        refused = await run(service.http, theirs["access_token"], document)
        assert refused.codes == ["PERSISTED_QUERY_NOT_IN_LIST"]
    assert await catalogue_state() == before


async def test_an_expired_refresh_token_is_refused_and_changes_nothing(service: Service) -> None:
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    patient = await make_patient()
    assert patient.token is not None
    tokens = await connect(service.http, patient.token, app, scopes=["IDENTITY_READ"])
    await AppToken.all().update(refresh_expires_at=utcnow() - timedelta(seconds=1))
    before = await catalogue_state()

    late = await token_request(
        service.http, app, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )

    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")
    assert await catalogue_state() == before
    (grant_row,) = await AppGrant.all()
    assert grant_row.revoked_at is None  # expired, not reused: the grant stands


async def test_a_platform_never_books_for_another_patient(service: Service) -> None:
    operator = await make_operator()
    app = await register_app(
        service.http, operator.token, scopes=["APPOINTMENTS_WRITE"], documents={"book": BOOK}
    )
    patient = await make_patient("Camille", "Durand")
    other = await make_patient("Bruno", "Moreau")
    assert patient.token is not None
    tokens = await connect(service.http, patient.token, app, scopes=["APPOINTMENTS_WRITE"])
    slot = {"startsAt": "2031-05-02T09:00:00+00:00", "endsAt": "2031-05-02T09:30:00+00:00"}
    before = (await catalogue_state(), await Appointment.all().count())

    refused = await run(
        service.http,
        tokens["access_token"],
        app.documents["book"],
        {"input": {"title": "Kiné", "patientId": other.id, **slot}},
    )

    assert refused.codes == ["NOT_FOUND"]
    assert (await catalogue_state(), await Appointment.all().count()) == before
    own = await run(
        service.http,
        tokens["access_token"],
        app.documents["book"],
        {"input": {"title": "Kiné", "patientId": patient.id, **slot}},
    )
    own.ok()
    assert await Appointment.filter(patient_id=other.patient.id).count() == 0
    assert await Appointment.filter(patient_id=patient.patient.id).count() == 1


HOLDER_ONLY = {
    "widen": (
        "mutation Widen($input: GrantAppAccessInput!) { grantAppAccess(input: $input) "
        "{ redirectTo } }"
    ),
    "revoke": (
        "mutation Revoke($input: RevokeAppAccessInput!) { revokeAppAccess(input: $input) "
        "{ patient { id } } }"
    ),
    "consent": (
        "mutation Consent($input: GrantConsentInput!) { grantConsent(input: $input) "
        "{ consent { id } } }"
    ),
    "register": (
        "mutation Register($input: RegisterPartnerAppInput!) { registerPartnerApp(input: $input) "
        "{ clientId } }"
    ),
}


async def test_an_app_never_acts_as_the_holder_nor_as_an_operator(service: Service) -> None:
    # given an app granted IDENTITY_READ only, whose registered documents include the
    # holder's and the operator's mutations
    operator = await make_operator()
    app = await register_app(
        service.http,
        operator.token,
        scopes=["IDENTITY_READ", "DOCUMENTS_READ"],
        documents=HOLDER_ONLY,
    )
    patient = await make_patient("Camille", "Durand")
    doctor = await make_professional()
    assert patient.token is not None
    tokens = await connect(service.http, patient.token, app, scopes=["IDENTITY_READ"])
    access = tokens["access_token"]
    _, challenge = pkce()
    before = (await catalogue_state(), await AccessEvent.all().count())

    # when it widens its own grant, revokes it, grants a professional a consent, or
    # references an app, for its patient (named, or not)
    calls: list[tuple[str, dict[str, Any]]] = []
    for patient_id in (None, patient.id):
        named = {"patientId": patient_id} if patient_id else {}
        calls += [
            (
                "widen",
                {
                    "clientId": app.client_id,
                    "redirectUri": REDIRECT,
                    "scopes": ["IDENTITY_READ", "DOCUMENTS_READ"],
                    "state": "s",
                    "codeChallenge": challenge,
                    "codeChallengeMethod": "S256",
                    **named,
                },
            ),
            ("revoke", {"appId": app.id, **named}),
            ("consent", {"professionalId": doctor.id, "access": "READ", **named}),
        ]
    calls.append(
        (
            "register",
            {
                "name": "Autre",
                "description": "x",
                "redirectUris": [REDIRECT],
                "scopes": ["IDENTITY_READ"],
                "confidential": False,
            },
        )
    )
    results = [
        await run(service.http, access, app.documents[name], {"input": variables})
        for name, variables in calls
    ]

    # then each is FORBIDDEN, and nothing changes
    assert [r.codes for r in results] == [["FORBIDDEN"]] * len(calls), [r.body for r in results]
    assert (await catalogue_state(), await AccessEvent.all().count()) == before
    (grant_row,) = await AppGrant.all()
    assert grant_row.scopes == ["IDENTITY_READ"] and grant_row.revoked_at is None
