"""The catalogue: referencing apps, granting them, and holding them to their grant, their
documents and their one patient. Every refusal is checked to change nothing."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from models.appointment import Appointment, AppointmentSource
from models.audit import AccessAction, AccessBasis, AccessEvent, ActorRole
from models.base import utcnow
from models.catalogue import AppGrant, AppToken, AuthorizationCode
from models.patient import Patient
from models.persisted import DocumentRegistration
from models.reminder import Reminder
from resolvers.ids import decode_as
from tests.catalogue_support import (
    REDIRECT,
    App,
    Service,
    catalogue_state,
    code_of,
    connect,
    document_id,
    exchange,
    grant,
    pkce,
    register_app,
    run,
    service,
    token_request,
)
from tests.factories import make_minor, make_operator, make_patient
from tests.graphql import gql

__all__ = ["service"]

ME = "query Me { viewer { ... on PartnerApp { actingFor { id firstName birthDate } } } }"
DOSSIER = (
    "query Dossier { viewer { ... on PartnerApp { actingFor { id "
    "documents(first: 10) { totalCount edges { node { title } } } } } } }"
)
PATIENT = "query Patient($id: ID!) { patient(id: $id) { id firstName } }"
CREATE = (
    "mutation Book($input: CreateAppointmentInput!) { createAppointment(input: $input) "
    "{ appointment { id title source status startsAt } } }"
)
MOVE = (
    "mutation Move($input: UpdateAppointmentInput!) { updateAppointment(input: $input) "
    "{ appointment { id startsAt source } } }"
)
CANCEL = (
    "mutation Cancel($input: CancelAppointmentInput!) { cancelAppointment(input: $input) "
    "{ appointment { id status cancelledReason } } }"
)
START = (
    "mutation Start($input: StartConversationInput!) { startConversation(input: $input) "
    "{ conversation { id } } }"
)
CONVERSATIONS = (
    "query Talk { viewer { ... on PartnerApp { actingFor { conversations { totalCount } } } } }"
)
DOCUMENTS = {"me": ME, "dossier": DOSSIER, "patient": PATIENT}
GRANTS = "{ viewer { ... on Patient { appGrants { app { name } scopes lastUsedAt } } } }"


async def _setup(
    service: Service,
    *,
    scopes: list[str],
    granted: list[str] | None = None,
    documents: dict[str, str] | None = None,
) -> tuple[App, Any, dict[str, Any]]:
    operator = await make_operator()
    app = await register_app(
        service.http, operator.token, scopes=scopes, documents=documents or DOCUMENTS
    )
    patient = await make_patient("Camille", "Durand", birth_date=date(1985, 6, 2))
    assert patient.token is not None
    tokens = await connect(service.http, patient.token, app, scopes=granted or scopes)
    return app, patient, tokens


def _codes(result: Any) -> list[str]:
    return list(result.codes)


# --- referencing ------------------------------------------------------------------------


async def test_an_operator_references_an_app_and_the_catalogue_shows_it_to_anyone(
    service: Service,
) -> None:
    # given an operator
    operator = await make_operator()

    # when they reference a confidential app with one document
    app = await register_app(
        service.http,
        operator.token,
        scopes=["APPOINTMENTS_WRITE", "IDENTITY_READ"],
        documents={"me": ME},
    )
    again = await gql(
        service.http,
        "{ catalog { name clientId homepage scopes scopeDescriptions { scope meaning } "
        "actingFor { id } } }",
    )

    # then the secret was shown once (its hash kept), the document is on the app's list,
    # and anyone reads the catalogue, with each scope in plain words
    assert app.secret is not None and len(app.secret) >= 40
    (registration,) = await DocumentRegistration.filter(client=app.client_id)
    assert registration.document_id == document_id(ME).removeprefix("sha256:")
    assert again.ok() == {
        "catalog": [
            {
                "name": "Rendez-vous Santé",
                "clientId": app.client_id,
                "homepage": "https://rdv.example",
                "scopes": ["IDENTITY_READ", "APPOINTMENTS_WRITE"],
                "scopeDescriptions": [
                    {
                        "scope": "IDENTITY_READ",
                        "meaning": "Voir votre nom, votre date de naissance et votre sexe "
                        "(jamais votre numéro de sécurité sociale).",
                    },
                    {
                        "scope": "APPOINTMENTS_WRITE",
                        "meaning": "Prendre, déplacer et annuler des rendez-vous dans votre "
                        "agenda (rendez-vous pris sur une plateforme), avec leurs rappels.",
                    },
                ],
                "actingFor": None,
            }
        ]
    }


async def test_a_public_app_gets_no_secret_and_only_an_operator_references_apps(
    service: Service,
) -> None:
    operator = await make_operator()
    patient = await make_patient()

    public = await register_app(
        service.http, operator.token, scopes=["IDENTITY_READ"], confidential=False
    )
    refused = await gql(
        service.http,
        'mutation { registerPartnerApp(input: {name: "X", description: "Y", '
        'redirectUris: ["https://x.example/cb"], scopes: [IDENTITY_READ], '
        "confidential: false}) { clientId } }",
        token=patient.token,
    )

    assert public.secret is None
    assert refused.codes == ["FORBIDDEN"]
    assert await DocumentRegistration.all().count() == 0


async def test_a_registration_with_a_bad_redirect_uri_or_document_changes_nothing(
    service: Service,
) -> None:
    operator = await make_operator()
    cases = [
        ({"redirectUris": ["http://rdv.example/cb"]}, "redirectUris"),  # http, not loopback
        ({"redirectUris": ["https://rdv.example/cb#frag"]}, "redirectUris"),
        ({"documents": ["{ notAField }"]}, "documents"),
        ({"documents": ["query {"]}, "documents"),
        ({"scopes": []}, "scopes"),
    ]
    for change, field in cases:
        variables = {
            "name": "Rendez-vous",
            "description": "RDV",
            "redirectUris": [REDIRECT],
            "scopes": ["IDENTITY_READ"],
            "confidential": True,
            "documents": [ME],
            **change,
        }
        result = await gql(
            service.http,
            "mutation($input: RegisterPartnerAppInput!) { registerPartnerApp(input: $input) "
            "{ clientId } }",
            {"input": variables},
            token=operator.token,
        )
        assert result.codes == ["BAD_USER_INPUT"], (change, result.body)
        assert result.errors[0]["extensions"]["field"] == field, change
    assert await DocumentRegistration.all().count() == 0
    assert (await gql(service.http, "{ catalog { name } }")).ok() == {"catalog": []}


# --- granting ---------------------------------------------------------------------------


async def test_the_patient_sees_each_app_granted_its_scopes_and_last_use(
    service: Service,
) -> None:
    # given an app granted two of its three scopes, which then reads once
    app, patient, tokens = await _setup(
        service,
        scopes=["IDENTITY_READ", "DOCUMENTS_READ", "APPOINTMENTS_READ"],
        granted=["IDENTITY_READ", "APPOINTMENTS_READ"],
    )
    (await run(service.http, tokens["access_token"], app.documents["me"])).ok()

    # when the patient lists their apps
    listed = (await gql(service.http, GRANTS, token=patient.token)).ok()

    # then they see the app, what it was granted, and when it last used it
    (entry,) = listed["viewer"]["appGrants"]
    assert entry["app"] == {"name": "Rendez-vous Santé"}
    assert entry["scopes"] == ["IDENTITY_READ", "APPOINTMENTS_READ"]
    assert entry["lastUsedAt"] is not None
    assert tokens["scope"] == "IDENTITY_READ APPOINTMENTS_READ"


async def test_a_refused_grant_stores_no_code(service: Service) -> None:
    # given an app and a patient
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    other = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    patient = await make_patient()
    assert patient.token is not None
    _, challenge = pkce()
    before = await catalogue_state()
    cases = [
        # plain PKCE, and no method the server knows
        ({"method": "plain"}, "codeChallengeMethod"),
        ({"method": "S512"}, "codeChallengeMethod"),
        # a redirect URI the app did not register, or one that merely starts like it
        ({"redirect_uri": "https://evil.example/cb"}, "redirectUri"),
        ({"redirect_uri": REDIRECT + "/../../evil"}, "redirectUri"),
        ({"redirect_uri": REDIRECT + "?next=https://evil.example"}, "redirectUri"),
        ({"redirect_uri": REDIRECT[:-1]}, "redirectUri"),
        # a scope the app may not ask for
        ({"scopes": ["DOCUMENTS_READ"]}, "scopes"),
        ({"scopes": []}, "scopes"),
        # a challenge that is not one
        ({"challenge": "short"}, "codeChallenge"),
    ]
    for change, field in cases:
        arguments: dict[str, Any] = {"scopes": ["IDENTITY_READ"], "challenge": challenge}
        arguments.update(change)
        result = await grant(service.http, patient.token, app, **arguments)
        assert result.codes == ["BAD_USER_INPUT"], (change, result.body)
        assert result.errors[0]["extensions"]["field"] == field, (change, result.errors)
    unknown = App(id=other.id, client_id="nobody-0000", secret=None, documents={})
    stranger = await grant(
        service.http, patient.token, unknown, scopes=["IDENTITY_READ"], challenge=challenge
    )
    assert stranger.codes == ["BAD_USER_INPUT"]
    assert stranger.errors[0]["extensions"]["field"] == "clientId"
    assert await catalogue_state() == before


async def test_only_the_patient_side_grants_and_a_representative_grants_for_a_minor(
    service: Service,
) -> None:
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    parent = await make_patient("Camille", "Durand")
    child = await make_minor(parent, "Léo")
    stranger = await make_patient("Bruno", "Moreau")
    assert parent.token is not None and stranger.token is not None
    _, challenge = pkce()

    # another patient cannot grant for the child; an operator grants for no one
    foreign = await grant(
        service.http,
        stranger.token,
        app,
        scopes=["IDENTITY_READ"],
        challenge=challenge,
        patient_id=child.id,
    )
    by_operator = await grant(
        service.http, operator.token, app, scopes=["IDENTITY_READ"], challenge=challenge
    )
    assert foreign.codes == ["FORBIDDEN"] or foreign.codes == ["NOT_FOUND"]
    assert by_operator.codes == ["FORBIDDEN"]
    assert await AuthorizationCode.all().count() == 0

    # the representative grants for the minor: the app acts for the child, and the
    # representative's write is in the child's log
    tokens = await connect(
        service.http,
        parent.token,
        App(app.id, app.client_id, app.secret, {}),
        scopes=["IDENTITY_READ"],
        patient_id=child.id,
    )
    me = await run(service.http, tokens["access_token"], document_id(ME))
    assert me.codes == ["PERSISTED_QUERY_NOT_IN_LIST"]  # this app registered no document
    (grant_row,) = await AppGrant.all()
    assert grant_row.patient_id == child.patient.id
    assert grant_row.granted_by_id == parent.patient.id
    (written,) = await AccessEvent.filter(patient_id=child.patient.id)
    assert (written.action, written.basis) == (AccessAction.WRITE, AccessBasis.REPRESENTATIVE)


# --- the token endpoint's refusals ------------------------------------------------------


async def test_a_wrong_verifier_is_refused_and_the_code_stays_usable(service: Service) -> None:
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    patient = await make_patient()
    assert patient.token is not None
    verifier, challenge = pkce()
    granted = await grant(
        service.http, patient.token, app, scopes=["IDENTITY_READ"], challenge=challenge
    )
    code = code_of(granted.ok()["grantAppAccess"]["redirectTo"])
    before = await catalogue_state()

    wrong = await exchange(service.http, app, code, pkce()[0])
    missing = await token_request(
        service.http,
        app,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
    )

    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert wrong.headers["cache-control"] == "no-store"
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    assert await catalogue_state() == before
    assert (await exchange(service.http, app, code, verifier)).status_code == 200


async def test_a_code_is_used_once_and_only_with_its_own_redirect_uri_and_client(
    service: Service,
) -> None:
    operator = await make_operator()
    app = await register_app(
        service.http,
        operator.token,
        scopes=["IDENTITY_READ"],
        redirect_uris=[REDIRECT, "https://rdv.example/other"],
    )
    thief = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    patient = await make_patient()
    assert patient.token is not None
    verifier, challenge = pkce()
    granted = await grant(
        service.http, patient.token, app, scopes=["IDENTITY_READ"], challenge=challenge
    )
    code = code_of(granted.ok()["grantAppAccess"]["redirectTo"])
    before = await catalogue_state()

    # another registered redirect URI, a merely prefix-matching one, another client
    other_uri = await exchange(
        service.http, app, code, verifier, redirect_uri="https://rdv.example/other"
    )
    prefix = await exchange(service.http, app, code, verifier, redirect_uri=REDIRECT + "x")
    stolen = await exchange(service.http, thief, code, verifier)
    bad_secret = await service.http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(app.client_id, "not-the-secret"),
    )
    assert [r.json()["error"] for r in (other_uri, prefix, stolen)] == ["invalid_grant"] * 3
    assert bad_secret.status_code == 401
    assert bad_secret.json()["error"] == "invalid_client"
    assert await catalogue_state() == before

    # used once; the second time refused, and what the first gave is revoked (OAuth 2.1:
    # a reused code revokes the tokens issued from it), nothing else changing
    first = await exchange(service.http, app, code, verifier)
    grants, tokens, codes, events = await catalogue_state()
    second = await exchange(service.http, app, code, verifier)
    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    after = await catalogue_state()
    assert (after[2], after[3]) == (codes, events)
    assert [(pk, scopes) for pk, _, scopes in after[0]] == [(g[0], g[2]) for g in grants]
    assert all(revoked is not None for _, revoked, _ in after[0])
    assert [(pk, rotated) for pk, _, rotated in after[1]] == [(t[0], t[2]) for t in tokens]
    assert all(revoked is not None for _, revoked, _ in after[1])


async def test_an_expired_code_is_refused(service: Service) -> None:
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    patient = await make_patient()
    assert patient.token is not None
    verifier, challenge = pkce()
    granted = await grant(
        service.http, patient.token, app, scopes=["IDENTITY_READ"], challenge=challenge
    )
    code = code_of(granted.ok()["grantAppAccess"]["redirectTo"])
    await AuthorizationCode.all().update(expires_at=utcnow() - timedelta(seconds=1))
    before = await catalogue_state()

    late = await exchange(service.http, app, code, verifier)

    assert late.json()["error"] == "invalid_grant"
    assert await catalogue_state() == before


async def test_unsupported_grant_types_and_malformed_requests_are_refused(
    service: Service,
) -> None:
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    before = await catalogue_state()

    password = await token_request(
        service.http, app, {"grant_type": "password", "username": "a", "password": "b"}
    )
    credentials = await token_request(service.http, app, {"grant_type": "client_credentials"})
    as_json = await service.http.post("/oauth/token", json={"grant_type": "refresh_token"})
    twice = await service.http.post(
        "/oauth/token",
        content="grant_type=refresh_token&grant_type=refresh_token",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert password.json()["error"] == "unsupported_grant_type"
    assert credentials.json()["error"] == "unsupported_grant_type"
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    assert twice.status_code == 400 and twice.json()["error"] == "invalid_request"
    assert await catalogue_state() == before


async def test_a_reused_refresh_token_ends_the_whole_grant(service: Service) -> None:
    # given an app that refreshed once
    app, patient, tokens = await _setup(service, scopes=["IDENTITY_READ"])
    refreshed = await token_request(
        service.http, app, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    newest = refreshed.json()

    # when the old refresh token comes back (a stolen copy, or a confused app)
    reused = await token_request(
        service.http, app, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )

    # then it is refused, and the grant dies: the newest tokens too
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    later = await token_request(
        service.http, app, {"grant_type": "refresh_token", "refresh_token": newest["refresh_token"]}
    )
    assert later.json()["error"] == "invalid_grant"
    me = await run(service.http, newest["access_token"], app.documents["me"])
    assert me.codes == ["UNAUTHENTICATED"]
    (grant_row,) = await AppGrant.all()
    assert grant_row.revoked_at is not None
    assert not await AppToken.filter(revoked_at=None).exists()
    listed = (await gql(service.http, GRANTS, token=patient.token)).ok()
    assert listed["viewer"]["appGrants"] == []


# --- enforcement ------------------------------------------------------------------------


async def test_a_revoked_grant_stops_its_tokens_at_once(service: Service) -> None:
    app, patient, tokens = await _setup(service, scopes=["IDENTITY_READ"])
    (await run(service.http, tokens["access_token"], app.documents["me"])).ok()

    revoked = await gql(
        service.http,
        "mutation($app: ID!) { revokeAppAccess(input: {appId: $app}) { patient { id } } }",
        {"app": app.id},
        token=patient.token,
    )
    revoked.ok()
    before = await catalogue_state()

    me = await run(service.http, tokens["access_token"], app.documents["me"])
    refresh = await token_request(
        service.http, app, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    again = await gql(
        service.http,
        "mutation($app: ID!) { revokeAppAccess(input: {appId: $app}) { patient { id } } }",
        {"app": app.id},
        token=patient.token,
    )

    assert me.response.status_code == 401
    assert me.codes == ["UNAUTHENTICATED"]
    assert refresh.json()["error"] == "invalid_grant"
    assert again.codes == ["NOT_FOUND"]
    assert await catalogue_state() == before
    listed = (await gql(service.http, GRANTS, token=patient.token)).ok()
    assert listed["viewer"]["appGrants"] == []


async def test_an_expired_access_token_is_refused_and_logs_nothing(service: Service) -> None:
    app, _, tokens = await _setup(service, scopes=["IDENTITY_READ"])
    await AppToken.all().update(access_expires_at=utcnow() - timedelta(seconds=1))
    before = await catalogue_state()

    me = await run(service.http, tokens["access_token"], app.documents["me"])

    assert me.codes == ["UNAUTHENTICATED"]
    assert await catalogue_state() == before


async def test_a_field_outside_the_scopes_is_forbidden_and_logs_nothing_of_its_own(
    service: Service,
) -> None:
    # given an app granted only the identity
    app, patient, tokens = await _setup(service, scopes=["IDENTITY_READ"])
    before = await AccessEvent.all().count()

    # when it asks for the documents too
    result = await run(service.http, tokens["access_token"], app.documents["dossier"])

    # then the documents are null with FORBIDDEN, the identity arrives, and the read of the
    # space is logged once, by the app, basis APP
    assert result.data == {"viewer": {"actingFor": {"id": patient.id, "documents": None}}}
    assert result.codes == ["FORBIDDEN"]
    assert result.errors[0]["path"] == ["viewer", "actingFor", "documents"]
    (event,) = await AccessEvent.filter(patient_id=patient.patient.id).offset(before)
    assert (event.actor_role, event.basis, event.action) == (
        ActorRole.PARTNER_APP,
        AccessBasis.APP,
        AccessAction.READ,
    )


async def test_an_app_without_identity_read_does_not_see_the_names(service: Service) -> None:
    app, _, tokens = await _setup(service, scopes=["APPOINTMENTS_READ"])

    result = await run(service.http, tokens["access_token"], app.documents["me"])

    assert result.data == {"viewer": {"actingFor": None}}
    assert result.codes == ["FORBIDDEN"]
    assert result.errors[0]["path"] == ["viewer", "actingFor", "firstName"]


async def test_an_app_never_sees_another_patient(service: Service) -> None:
    app, _, tokens = await _setup(service, scopes=["IDENTITY_READ"])
    other = await make_patient("Bruno", "Moreau")
    before = await catalogue_state()

    result = await run(
        service.http, tokens["access_token"], app.documents["patient"], {"id": other.id}
    )

    assert result.data == {"patient": None}
    assert result.codes == ["NOT_FOUND"]
    assert await AccessEvent.filter(patient_id=other.patient.id).count() == 0
    assert await catalogue_state() == before


async def test_an_app_runs_only_its_own_registered_documents(service: Service) -> None:
    # given two apps, each with its documents, under TRUSTED_DOCUMENTS=off
    app, _, tokens = await _setup(service, scopes=["IDENTITY_READ"])
    operator = await make_operator()
    mine_only = "query Mine { viewer { __typename } }"
    await register_app(
        service.http, operator.token, scopes=["IDENTITY_READ"], documents={"other": mine_only}
    )
    access = tokens["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    before = await catalogue_state()

    free_text = await service.http.post("/graphql", json={"query": ME}, headers=headers)
    others = await run(service.http, access, document_id(mine_only))
    unknown = await run(service.http, access, "sha256:" + "0" * 64)
    apq = await service.http.post(
        "/graphql",
        json={
            "query": ME,
            "extensions": {
                "persistedQuery": {
                    "version": 1,
                    "sha256Hash": document_id(ME).removeprefix("sha256:"),
                }
            },
        },
        headers=headers,
    )
    as_client = await service.http.post(
        "/graphql",
        json={"documentId": document_id(mine_only)},
        headers={**headers, "apollographql-client-name": app.client_id},
    )

    assert [e["extensions"]["code"] for e in free_text.json()["errors"]] == [
        "PERSISTED_QUERY_ID_REQUIRED"
    ]
    assert others.codes == ["PERSISTED_QUERY_NOT_IN_LIST"]
    assert unknown.codes == ["PERSISTED_QUERY_NOT_IN_LIST"]
    assert [e["extensions"]["code"] for e in apq.json()["errors"]] == [
        "PERSISTED_QUERY_ID_REQUIRED"
    ]
    assert [e["extensions"]["code"] for e in as_client.json()["errors"]] == [
        "PERSISTED_QUERY_NOT_IN_LIST"
    ]
    assert await catalogue_state() == before
    # its own document, by its APQ hash alone, is served
    by_hash = await service.http.post(
        "/graphql",
        json={
            "extensions": {
                "persistedQuery": {
                    "version": 1,
                    "sha256Hash": document_id(ME).removeprefix("sha256:"),
                }
            }
        },
        headers=headers,
    )
    assert by_hash.json()["data"]["viewer"]["actingFor"]["firstName"] == "Camille"


async def test_an_app_never_reads_messages_nor_starts_a_conversation(service: Service) -> None:
    app, patient, tokens = await _setup(
        service,
        scopes=["IDENTITY_READ", "DOCUMENTS_READ"],
        documents={"talk": CONVERSATIONS, "start": START},
    )
    before = await catalogue_state()

    talk = await run(service.http, tokens["access_token"], app.documents["talk"])
    start = await run(
        service.http,
        tokens["access_token"],
        app.documents["start"],
        {"input": {"patientId": patient.id, "subject": "Bonjour", "body": "Hello"}},
    )

    assert talk.data == {"viewer": {"actingFor": {"conversations": None}}}
    assert talk.codes == ["FORBIDDEN"]
    assert start.codes == ["FORBIDDEN"]
    # the read of the space is the only trace (its identity came back)
    assert (await catalogue_state())[:3] == before[:3]


async def test_a_representatives_grant_ends_when_the_minor_turns_18(service: Service) -> None:
    operator = await make_operator()
    app = await register_app(
        service.http, operator.token, scopes=["IDENTITY_READ"], documents={"me": ME}
    )
    parent = await make_patient("Camille", "Durand")
    child = await make_minor(parent, "Léo", age=17)
    assert parent.token is not None
    tokens = await connect(
        service.http, parent.token, app, scopes=["IDENTITY_READ"], patient_id=child.id
    )
    assert (await run(service.http, tokens["access_token"], app.documents["me"])).ok()

    today = date.today()
    await Patient.filter(id=child.patient.id).update(
        birth_date=today.replace(year=today.year - 18) - timedelta(days=1)
    )
    after = await run(service.http, tokens["access_token"], app.documents["me"])

    assert after.codes == ["UNAUTHENTICATED"]


async def test_closing_the_space_ends_its_grants(service: Service) -> None:
    app, patient, tokens = await _setup(service, scopes=["IDENTITY_READ"])

    closed = await gql(
        service.http,
        "mutation($p: String!) { closeSpace(input: {password: $p}) { patient { status } } }",
        {"p": "correct horse battery staple"},
        token=patient.token,
    )
    closed.ok()

    me = await run(service.http, tokens["access_token"], app.documents["me"])
    assert me.codes == ["UNAUTHENTICATED"]
    (grant_row,) = await AppGrant.all()
    assert grant_row.revoked_at is not None


# --- appointment platforms --------------------------------------------------------------


async def test_a_platform_books_moves_and_cancels_through_the_agenda(service: Service) -> None:
    # given an appointment platform granted APPOINTMENTS_WRITE
    app, patient, tokens = await _setup(
        service,
        scopes=["APPOINTMENTS_WRITE"],
        documents={"create": CREATE, "move": MOVE, "cancel": CANCEL},
    )
    access = tokens["access_token"]
    start = utcnow().replace(microsecond=0) + timedelta(days=5)

    # when it books, moves and cancels an appointment
    booked = await run(
        service.http,
        access,
        app.documents["create"],
        {
            "input": {
                "title": "Dentiste",
                "startsAt": start.isoformat(),
                "endsAt": (start + timedelta(minutes=30)).isoformat(),
                "location": "Lyon",
            }
        },
    )
    appointment = booked.ok()["createAppointment"]["appointment"]
    reminders = await Reminder.filter(patient_id=patient.patient.id).count()
    moved = await run(
        service.http,
        access,
        app.documents["move"],
        {
            "input": {
                "appointmentId": appointment["id"],
                "startsAt": (start + timedelta(days=1)).isoformat(),
                "endsAt": (start + timedelta(days=1, minutes=30)).isoformat(),
            }
        },
    )
    cancelled = await run(
        service.http,
        access,
        app.documents["cancel"],
        {
            "input": {
                "appointmentId": appointment["id"],
                "reason": "Annulé sur la plateforme",
            }
        },
    )

    # then the appointment is the platform's, in the patient's agenda with its reminders,
    # and each write is in the patient's log as the app's
    assert appointment["source"] == "PLATFORM"
    assert appointment["status"] == "SCHEDULED"
    assert reminders == 2  # 48 h and 2 h before
    assert moved.ok()["updateAppointment"]["appointment"]["source"] == "PLATFORM"
    assert cancelled.ok()["cancelAppointment"]["appointment"] == {
        "id": appointment["id"],
        "status": "CANCELLED",
        "cancelledReason": "Annulé sur la plateforme",
    }
    row = await Appointment.get(id=decode_as(appointment["id"], "Appointment"))
    assert row.patient_id == patient.patient.id
    events = await AccessEvent.filter(patient_id=patient.patient.id, action=AccessAction.WRITE)
    assert len(events) == 3
    assert {(e.actor_role, e.basis) for e in events} == {(ActorRole.PARTNER_APP, AccessBasis.APP)}
    own = await gql(
        service.http,
        "{ viewer { ... on Patient { appointments { totalCount edges { node { source } } } } } }",
        token=patient.token,
    )
    assert own.ok()["viewer"]["appointments"]["edges"] == [{"node": {"source": "PLATFORM"}}]


async def test_a_platform_changes_nothing_without_the_scope_nor_the_patients_own(
    service: Service,
) -> None:
    # given an appointment the patient booked, and a platform granted to read the agenda only
    documents = {"create": CREATE, "move": MOVE, "cancel": CANCEL}
    app, patient, tokens = await _setup(
        service,
        scopes=["APPOINTMENTS_READ", "APPOINTMENTS_WRITE"],
        granted=["APPOINTMENTS_READ"],
        documents=documents,
    )
    start = utcnow().replace(microsecond=0) + timedelta(days=3)
    slot = {"startsAt": start.isoformat(), "endsAt": (start + timedelta(minutes=20)).isoformat()}
    own = await gql(
        service.http, CREATE, {"input": {"title": "Généraliste", **slot}}, token=patient.token
    )
    appointment_id = own.ok()["createAppointment"]["appointment"]["id"]
    before = (await catalogue_state(), await Appointment.all().count())

    # when it books, or cancels the patient's appointment
    booked = await run(
        service.http,
        tokens["access_token"],
        app.documents["create"],
        {"input": {"title": "X", **slot}},
    )
    cancelled = await run(
        service.http,
        tokens["access_token"],
        app.documents["cancel"],
        {"input": {"appointmentId": appointment_id}},
    )

    # then nothing changes
    assert booked.codes == ["FORBIDDEN"]
    assert cancelled.codes == ["FORBIDDEN"]
    assert (await catalogue_state(), await Appointment.all().count()) == before

    # and granted APPOINTMENTS_WRITE, it still leaves alone what the patient booked
    assert patient.token is not None
    writer = await connect(
        service.http, patient.token, app, scopes=["APPOINTMENTS_READ", "APPOINTMENTS_WRITE"]
    )
    before = (await catalogue_state(), await Appointment.all().count())
    moved = await run(
        service.http,
        writer["access_token"],
        app.documents["move"],
        {"input": {"appointmentId": appointment_id, "title": "Y"}},
    )
    assert moved.codes == ["FORBIDDEN"]
    assert (await catalogue_state(), await Appointment.all().count()) == before
    row = await Appointment.get(id=decode_as(appointment_id, "Appointment"))
    assert (row.source, row.title) == (AppointmentSource.PATIENT, "Généraliste")


# --- the demo's partner app, as the README walks it ---------------------------------------


async def test_the_demo_platform_walks_the_readme_flow(service: Service) -> None:
    # given the demo world, and Jean logged in on the first-party front end
    from models.demo import DEMO_PASSWORD, seed_demo
    from models.demo_world import JEAN, PLATFORM_CLIENT_ID, PLATFORM_REDIRECT

    services = service.app.state.services
    await seed_demo(services.vault, services.blobs)
    login = await gql(
        service.http,
        "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { token } }",
        {"e": JEAN, "p": DEMO_PASSWORD},
    )
    jean = login.ok()["login"]["token"]
    catalog = (await gql(service.http, "{ catalog { clientId scopes } }")).ok()["catalog"]
    (platform,) = [a for a in catalog if a["clientId"] == PLATFORM_CLIENT_ID]
    app = App(id="", client_id=PLATFORM_CLIENT_ID, secret=None, documents={})

    # when Jean grants it (again) and the platform exchanges its code as a public client
    verifier, challenge = pkce()
    granted = await grant(
        service.http,
        jean,
        app,
        scopes=platform["scopes"],
        challenge=challenge,
        redirect_uri=PLATFORM_REDIRECT,
    )
    code = code_of(granted.ok()["grantAppAccess"]["redirectTo"])
    tokens = await service.http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "client_id": PLATFORM_CLIENT_ID,
            "code": code,
            "redirect_uri": PLATFORM_REDIRECT,
            "code_verifier": verifier,
        },
    )
    access = tokens.json()["access_token"]
    start = utcnow().replace(microsecond=0) + timedelta(days=20)
    who = await run(service.http, access, "Patient")
    booked = await run(
        service.http,
        access,
        "Book",
        {
            "input": {
                "title": "Entretien pharmaceutique",
                "startsAt": start.isoformat(),
                "endsAt": (start + timedelta(minutes=30)).isoformat(),
            }
        },
    )
    agenda = await run(service.http, access, "Agenda")

    # then it reads Jean, books in his agenda, and finds it there, by its documents' ids
    assert tokens.status_code == 200
    assert who.ok()["viewer"]["actingFor"]["lastName"] == "Petit"
    assert booked.ok()["createAppointment"]["appointment"]["source"] == "PLATFORM"
    titles = [
        e["node"]["title"] for e in agenda.ok()["viewer"]["actingFor"]["appointments"]["edges"]
    ]
    assert "Entretien pharmaceutique" in titles
    assert await AppGrant.filter(revoked_at=None).count() == 1  # the new grant replaced the seed's
