"""The catalogue: partner apps, the grants patients give them, and the app as viewer."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import strawberry
from graphql import GraphQLError, OperationDefinitionNode, parse

from api.context import Info
from api.errors import BadUserInput, Forbidden
from api.extensions.persisted import check_manifest
from api.oauth import Authorization, AuthorizationRefused, authorize
from models import catalogue, persisted
from models.catalogue import SCOPE_MEANINGS
from models.catalogue import AppGrant as AppGrantModel
from models.catalogue import AppScope as _AppScope
from models.catalogue import PartnerApp as PartnerAppModel
from models.patient import SpaceStatus as SpaceStatusModel
from resolvers import ids
from resolvers.audit import logged_write
from resolvers.cost import sized
from resolvers.enums import describe_values
from resolvers.node import Node, register
from resolvers.permissions import IsOperator, guard
from resolvers.scope import SPACE_ID, patient_scope

if TYPE_CHECKING:
    from resolvers.people import Patient

PatientRef = Annotated["Patient", strawberry.lazy("resolvers.people")]

MAX_DOCUMENTS = 200
MAX_DOCUMENT_BYTES = 100 * 1024
APP_GRANTS = sized(20)  # the apps one space granted
CATALOG = sized(100)
SCOPES = sized(len(_AppScope))

AppScope = strawberry.enum(
    _AppScope,
    name="AppScope",
    description="What a patient may grant a partner app; `PartnerApp.scopeDescriptions` says "
    "each in plain words.",
)
describe_values(
    AppScope,
    {
        "IDENTITY_READ": "Identité — name, birth date and sex; never the NIR.",
        "DOCUMENTS_READ": (
            "Lecture des documents — the documents a professional under a READ consent would "
            "see: never a hidden one."
        ),
        "DOCUMENTS_WRITE": "Ajout de documents — add documents, authored by the app.",
        "HEALTH_PROFILE_READ": (
            "Lecture du profil médical — the health profile, the treating doctor and the "
            "screenings."
        ),
        "VACCINATIONS_READ": "Lecture des vaccinations — the carnet de vaccination.",
        "APPOINTMENTS_READ": "Lecture des rendez-vous — the agenda.",
        "APPOINTMENTS_WRITE": (
            "Gestion des rendez-vous — create, move and cancel appointments (source PLATFORM)."
        ),
    },
)


@strawberry.type(
    name="AppScopeDescription", description="A scope and what it lets an app do, in plain words."
)
class AppScopeDescription:
    scope: AppScope = strawberry.field(description="The scope.")  # type: ignore[valid-type]
    meaning: str = strawberry.field(description="As the consent screen shows it to the patient.")


@strawberry.type(
    name="PartnerApp",
    description=(
        "An app of the catalogue (an appointment platform, a tracker, a service) that acts for "
        "one patient, within the scopes that patient granted, through the persisted documents "
        "it registered."
    ),
)
class PartnerApp(Node):
    pk: strawberry.Private[UUID]
    name: str = strawberry.field(description="Its name, as the consent screen shows it.")
    description: str = strawberry.field(description="What it does, in plain words.")
    homepage: str | None = strawberry.field(description="Its web site; null when not given.")
    client_id: str = strawberry.field(
        description="Its OAuth client_id (public), and the name of its list of documents."
    )
    scopes: list[AppScope] = strawberry.field(  # type: ignore[valid-type]
        description="The scopes it may ask a patient for."
    )

    @strawberry.field(
        description="Each of its scopes in plain words, for the consent screen.",
        directives=[SCOPES],
    )
    def scope_descriptions(self) -> list[AppScopeDescription]:
        return [AppScopeDescription(scope=s, meaning=SCOPE_MEANINGS[s]) for s in self.scopes]

    @strawberry.field(
        description="The space this app acts for: to the app's own token only, else null."
    )
    async def acting_for(self, info: Info) -> PatientRef | None:
        actor = info.context.actor
        if actor.app_id != self.pk or actor.acting_for is None:
            return None
        from resolvers.people import Patient, read_patients

        found = await read_patients(info, [actor.acting_for])  # an access event (APP)
        row = found.get(actor.acting_for)
        return Patient.from_model(row) if row is not None else None

    @classmethod
    def from_model(cls, row: PartnerAppModel) -> PartnerApp:
        return cls(
            id=strawberry.ID(ids.encode("PartnerApp", row.id)),
            pk=row.id,
            name=row.name,
            description=row.description,
            homepage=row.homepage,
            client_id=row.client_id,
            scopes=[_AppScope(s) for s in row.scopes],
        )


@strawberry.type(name="AppGrant", description="What a space granted one partner app.")
class AppGrant:
    app: PartnerApp = strawberry.field(description="The app.")
    scopes: list[AppScope] = strawberry.field(  # type: ignore[valid-type]
        description="What it may do for this space."
    )
    granted_at: datetime = strawberry.field(description="When the space granted them.")
    last_used_at: datetime | None = strawberry.field(
        description="When the app last used it (to the minute); null if it never has."
    )

    @classmethod
    def from_model(cls, row: AppGrantModel) -> AppGrant:
        return cls(
            app=PartnerApp.from_model(row.app),
            scopes=[_AppScope(s) for s in row.scopes],
            granted_at=row.created_at,
            last_used_at=row.last_used_at,
        )


async def patient_app_grants(info: Info, patient_pk: UUID) -> list[AppGrant]:
    rows = await catalogue.grants_in_force(patient_pk, today=info.context.today)
    return [AppGrant.from_model(row) for row in rows]


async def app_viewer(info: Info) -> PartnerApp | None:
    app_id = info.context.actor.app_id
    row = await info.context.loaders.partner_app.load(app_id) if app_id else None
    return PartnerApp.from_model(row) if row is not None else None


@register("PartnerApp")
async def _app_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    """The catalogue is public: any app by id."""
    return {row.id: PartnerApp.from_model(row) for row in await PartnerAppModel.filter(id__in=pks)}


# --- query ------------------------------------------------------------------------------


@strawberry.type
class CatalogueQuery:
    @strawberry.field(
        description="The partner apps referenced in the catalogue, by name (public).",
        directives=[CATALOG],
    )
    async def catalog(self) -> list[PartnerApp]:
        return [PartnerApp.from_model(row) for row in await catalogue.list_apps()]


# --- mutations --------------------------------------------------------------------------


@strawberry.input
class RegisterPartnerAppInput:
    name: str = strawberry.field(description="Its name, as the consent screen shows it.")
    description: str = strawberry.field(description="What it does, in plain words.")
    redirect_uris: list[str] = strawberry.field(
        description="Compared exactly: https, http on the loopback, or a native app's scheme."
    )
    scopes: list[AppScope] = strawberry.field(  # type: ignore[valid-type]
        description="The scopes it may ask a patient for (the most a patient can grant it)."
    )
    confidential: bool = strawberry.field(
        description="A confidential client gets a secret; a public one (a mobile or browser "
        "app) none, and relies on PKCE alone."
    )
    homepage: str | None = strawberry.field(default=None, description="Its web site, if any.")
    documents: list[str] | None = strawberry.field(
        default=None,
        description="The texts of the GraphQL documents the app will run, registered on its "
        "list (more can be loaded with `espace-sante documents load --client <clientId>`).",
    )


@strawberry.type
class RegisterPartnerAppPayload:
    app: PartnerApp = strawberry.field(description="The app, referenced.")
    client_id: str = strawberry.field(description="Its OAuth client_id.")
    client_secret: str | None = strawberry.field(
        description="Shown this once (only its hash is kept); null for a public client."
    )


@strawberry.input
class GrantAppAccessInput:
    client_id: str = strawberry.field(description="The app's `client_id`, from its request.")
    redirect_uri: str = strawberry.field(
        description="The `redirect_uri` of its request: one it registered, compared exactly."
    )
    scopes: list[AppScope] = strawberry.field(  # type: ignore[valid-type]
        description="What the patient grants: among those the app may ask for."
    )
    state: str = strawberry.field(description="The app's `state`, sent back as it came.")
    code_challenge: str = strawberry.field(
        description="The app's PKCE `code_challenge` (S256 of its code verifier)."
    )
    code_challenge_method: str = strawberry.field(description='"S256" (the only one accepted).')
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=SPACE_ID)


@strawberry.type
class GrantAppAccessPayload:
    redirect_to: str = strawberry.field(
        description="The app's redirect URI with `code` (single use, valid 2 minutes) and "
        "`state`: where the front end sends the browser."
    )


@strawberry.input
class RevokeAppAccessInput:
    app_id: strawberry.ID = strawberry.field(description="The app (`PartnerApp.id`).")
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=SPACE_ID)


@strawberry.type
class RevokeAppAccessPayload:
    patient: PatientRef = strawberry.field(description="The patient, as changed.")


def _manifest(texts: list[str], info: Info) -> persisted.Manifest | None:
    """The documents of a registration, each a GraphQL document the current schema runs."""
    if not texts:
        return None
    if len(texts) > MAX_DOCUMENTS:
        raise BadUserInput(f"At most {MAX_DOCUMENTS} documents.", field="documents")
    entries = []
    for n, text in enumerate(texts):
        if not text.strip() or len(text.encode()) > MAX_DOCUMENT_BYTES:
            raise BadUserInput(
                f"Document {n}: 1 byte to {MAX_DOCUMENT_BYTES // 1024} KB.", field="documents"
            )
        try:
            parsed = parse(text)
        except GraphQLError as error:
            raise BadUserInput(
                f"Document {n} is not GraphQL: {error.message}", field="documents"
            ) from None
        names = [
            d.name.value
            for d in parsed.definitions
            if isinstance(d, OperationDefinitionNode) and d.name is not None
        ]
        entries.append(
            persisted.ManifestEntry(
                persisted.sha256_hex(text), text, names[0][:200] if names else None, None
            )
        )
    manifest = persisted.Manifest("registerPartnerApp", tuple(entries))
    checked = check_manifest(manifest, info.schema._schema)
    problems = checked.errors + checked.warnings
    if problems:
        raise BadUserInput(problems[0], field="documents")
    return manifest


@strawberry.type
class CatalogueMutation:
    @strawberry.mutation(
        description=(
            "OPERATOR: reference a partner app, with its redirect URIs, the scopes it may ask "
            "for, whether it is confidential, and the documents it will run."
        ),
        extensions=guard(IsOperator()),
    )
    async def register_partner_app(
        self, info: Info, input: RegisterPartnerAppInput
    ) -> RegisterPartnerAppPayload:
        ctx = info.context
        manifest = _manifest(input.documents or [], info)
        registered = await catalogue.register_app(
            catalogue.NewApp(
                name=input.name,
                description=input.description,
                homepage=input.homepage,
                redirect_uris=list(input.redirect_uris),
                scopes=[_AppScope(s) for s in input.scopes],
                confidential=input.confidential,
            ),
            documents=manifest,
            registered_by=f"operator:{ctx.actor.operator_id}",
            vault=ctx.vault,
        )
        return RegisterPartnerAppPayload(
            app=PartnerApp.from_model(registered.app),
            client_id=registered.app.client_id,
            client_secret=registered.client_secret,
        )

    @strawberry.mutation(
        description=(
            "The holder (or a legal representative, with patientId) agrees on the consent "
            "screen to what an app asks (RFC 6749 §4.1.1, PKCE S256): the answer is the "
            "app's redirect URI with a code the app exchanges at POST /oauth/token."
        )
    )
    async def grant_app_access(
        self, info: Info, input: GrantAppAccessInput
    ) -> GrantAppAccessPayload:
        ctx = info.context
        pk, relation = await patient_scope(info, input.patient_id)
        patient = await ctx.loaders.patient.load(pk)
        if patient is None or patient.status is not SpaceStatusModel.ACTIVE:
            raise Forbidden("Only an active space grants access to apps.")
        wanted = Authorization(
            client_id=input.client_id,
            redirect_uri=input.redirect_uri,
            scopes=[_AppScope(s).value for s in input.scopes],
            state=input.state,
            code_challenge=input.code_challenge,
            code_challenge_method=input.code_challenge_method,
        )
        try:
            async with logged_write(info, relation):
                redirect_to = await authorize(
                    wanted,
                    patient_id=pk,
                    granted_by_id=ctx.actor.patient_id,
                    vault=ctx.vault,
                    settings=ctx.settings,
                    now=ctx.now,
                )
        except AuthorizationRefused as refused:
            raise BadUserInput(refused.message, field=refused.field) from None
        return GrantAppAccessPayload(redirect_to=redirect_to)

    @strawberry.mutation(
        description=(
            "The holder (or a legal representative) takes back what an app was granted: its "
            "tokens stop working at once."
        )
    )
    async def revoke_app_access(
        self, info: Info, input: RevokeAppAccessInput
    ) -> RevokeAppAccessPayload:
        from resolvers.people import Patient

        ctx = info.context
        pk, relation = await patient_scope(info, input.patient_id, allow_closed=True)
        app_pk = ids.decode_as(str(input.app_id), "PartnerApp")
        async with logged_write(info, relation):
            await catalogue.revoke_app_access(app_pk, pk, now=ctx.now)
        row = await ctx.loaders.patient.load(pk)
        assert row is not None
        return RevokeAppAccessPayload(patient=Patient.from_model(row))
