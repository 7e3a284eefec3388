"""The catalogue: partner apps, the grants patients give them, and their OAuth credentials.

An operator references an app (`register_app`): its redirect URIs, the scopes it may ask for,
whether it is a confidential client (a client secret) or a public one (PKCE alone), and the
persisted documents it may run, on the list of its client id (models/persisted.py). A holder,
or the representative of a minor, grants it some of those scopes: an authorisation code
(`issue_code`, single use, valid CODE_TTL) that the app exchanges for tokens
(`exchange_code`): a grant, an access token (ACCESS_TOKEN_TTL) and a refresh token
(REFRESH_TOKEN_TTL), rotated at each use (`rotate_refresh`); a rotated refresh token that
comes back is a reuse, and the whole grant dies (`end_grant`).

The protocol's rules (which client may use which grant, PKCE, redirect URIs, error codes)
are decided at the edge by Authlib (api/oauth.py); this module keeps the rows, and makes
every change conditional on what was read, so that a code is exchanged once and a refresh
token rotated once even when two requests race.

Client secrets, codes and tokens are stored only as keyed hashes (`digest`), under a key of
the vault's own per kind.

A grant is in force (`in_force`) while it is not revoked, the space is active, and, for a
grant given by a legal representative, while that representative is linked to the minor,
the minor is a minor, and the representative's own space is active. The grant is decided
again at every request (`authenticate_access_token`), so the 18th birthday or a closing ends
it with no job to run.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from models import persisted
from models.base import Entity, parameter_prefix
from models.crypto import Vault, constant_time_equals
from models.errors import Conflict, Invalid, NotFound
from models.patient import Patient, Representation, SpaceStatus, is_minor


class AppScope(StrEnum):
    IDENTITY_READ = "IDENTITY_READ"
    DOCUMENTS_READ = "DOCUMENTS_READ"
    DOCUMENTS_WRITE = "DOCUMENTS_WRITE"
    HEALTH_PROFILE_READ = "HEALTH_PROFILE_READ"
    VACCINATIONS_READ = "VACCINATIONS_READ"
    APPOINTMENTS_READ = "APPOINTMENTS_READ"
    APPOINTMENTS_WRITE = "APPOINTMENTS_WRITE"


# What each scope lets an app do, in the words the consent screen shows the patient.
SCOPE_MEANINGS: dict[AppScope, str] = {
    AppScope.IDENTITY_READ: (
        "Voir votre nom, votre date de naissance et votre sexe (jamais votre numéro de "
        "sécurité sociale)."
    ),
    AppScope.DOCUMENTS_READ: (
        "Lire les documents de votre dossier qu'un professionnel autorisé à le consulter "
        "verrait : jamais un document que vous avez masqué."
    ),
    AppScope.DOCUMENTS_WRITE: "Ajouter des documents à votre dossier, signés par l'application.",
    AppScope.HEALTH_PROFILE_READ: (
        "Lire votre profil médical (allergies, traitements, antécédents, mesures, directives "
        "anticipées, personne de confiance, médecin traitant) et vos dépistages."
    ),
    AppScope.VACCINATIONS_READ: "Lire votre carnet de vaccination.",
    AppScope.APPOINTMENTS_READ: "Voir les rendez-vous de votre agenda.",
    AppScope.APPOINTMENTS_WRITE: (
        "Prendre, déplacer et annuler des rendez-vous dans votre agenda (rendez-vous pris "
        "sur une plateforme), avec leurs rappels."
    ),
}

# Why a partner app's token opens no subscription: reminders, messages and the access log
# are the patient's (an app reads the agenda over HTTP, within its scopes).
APP_STREAMS = (
    "A partner app has no live stream: alerts, messages and the access log are the patient's."
)

ACCESS_TOKEN_TTL = timedelta(minutes=10)
REFRESH_TOKEN_TTL = timedelta(days=30)
CODE_TTL = timedelta(minutes=2)
# `last_used_at` is written at most once in this span per grant: not one write per request.
LAST_USE_PRECISION = timedelta(minutes=1)

# Access tokens carry a prefix that no session token can have (theirs are URL-safe base64,
# without dots): the bearer token of a request tells by itself which table holds it.
ACCESS_PREFIX = "at."
REFRESH_PREFIX = "rt."
CODE_PREFIX = "ac."

MAX_NAME = 100
MAX_DESCRIPTION = 1000
MAX_URI = 500
MAX_REDIRECT_URIS = 10
_CLIENT_SLUG = re.compile(r"[^a-z0-9]+")
_LOOPBACK = {"localhost", "127.0.0.1", "[::1]", "::1"}


class PartnerApp(Entity):
    """An app referenced in the catalogue."""

    name = fields.CharField(max_length=MAX_NAME)
    description = fields.CharField(max_length=MAX_DESCRIPTION)
    homepage = fields.CharField(max_length=MAX_URI, null=True)
    # Also the name of its list of persisted documents (models/persisted.py).
    client_id = fields.CharField(max_length=64, unique=True)
    client_secret_hash = fields.CharField(max_length=64, null=True)  # None: a public client
    redirect_uris: list[str] = fields.JSONField()
    scopes: list[str] = fields.JSONField()
    registered_by = fields.CharField(max_length=200)

    class Meta:
        table = "partner_app"
        table_description = "Apps of the catalogue: OAuth clients acting for patients."

    @property
    def confidential(self) -> bool:
        return self.client_secret_hash is not None

    @property
    def scope_set(self) -> frozenset[AppScope]:
        return frozenset(AppScope(s) for s in self.scopes)


class AppGrant(Entity):
    """The scopes a patient's space granted one app, given by its holder or a legal
    representative of the minor (`granted_by`)."""

    app: fields.ForeignKeyRelation[PartnerApp] = fields.ForeignKeyField(
        "models.PartnerApp", related_name="grants", on_delete=fields.CASCADE
    )
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="app_grants", on_delete=fields.CASCADE
    )
    granted_by: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="app_grants_given", on_delete=fields.CASCADE
    )
    scopes: list[str] = fields.JSONField()
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)
    app_id: UUID
    patient_id: UUID
    granted_by_id: UUID

    class Meta:
        table = "app_grant"
        table_description = "What a space granted a partner app, and who granted it."
        indexes = (("patient_id", "app_id"),)


class AuthorizationCode(Entity):
    """A code handed to an app through its redirect URI: single use, short-lived."""

    code_hash = fields.CharField(max_length=64, unique=True)
    app: fields.ForeignKeyRelation[PartnerApp] = fields.ForeignKeyField(
        "models.PartnerApp", related_name="codes", on_delete=fields.CASCADE
    )
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="app_codes", on_delete=fields.CASCADE
    )
    granted_by: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="app_codes_given", on_delete=fields.CASCADE
    )
    redirect_uri = fields.CharField(max_length=MAX_URI)
    scopes: list[str] = fields.JSONField()
    code_challenge = fields.CharField(max_length=128)
    code_challenge_method = fields.CharField(max_length=8)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    # The grant its exchange created: what a reuse of the code revokes (RFC 6749 §4.1.2).
    grant: fields.ForeignKeyNullableRelation[AppGrant] = fields.ForeignKeyField(
        "models.AppGrant", related_name="codes", null=True, on_delete=fields.SET_NULL
    )
    app_id: UUID
    patient_id: UUID
    granted_by_id: UUID
    grant_id: UUID | None

    class Meta:
        table = "app_authorization_code"
        table_description = "Authorisation codes given to partner apps: single use."


class AppToken(Entity):
    """An access token and its refresh token, issued under one grant. Rotating the refresh
    token ends both (`rotated_at`, `revoked_at`) and issues the next pair."""

    grant: fields.ForeignKeyRelation[AppGrant] = fields.ForeignKeyField(
        "models.AppGrant", related_name="tokens", on_delete=fields.CASCADE
    )
    access_hash = fields.CharField(max_length=64, unique=True)
    refresh_hash = fields.CharField(max_length=64, unique=True)
    scopes: list[str] = fields.JSONField()
    access_expires_at = fields.DatetimeField()
    refresh_expires_at = fields.DatetimeField()
    rotated_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    grant_id: UUID

    class Meta:
        table = "app_token"
        table_description = "A partner app's access and refresh tokens (as hashes)."


# --- secrets ----------------------------------------------------------------------------


def digest(vault: Vault, value: str, *, kind: str) -> str:
    """How a client secret, a code or a token is stored: a keyed hash, one key per kind."""
    return vault.keyed_hash(value, purpose=f"partner-app-{kind}")


def new_access_token() -> str:
    return ACCESS_PREFIX + secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def new_code() -> str:
    return CODE_PREFIX + secrets.token_urlsafe(32)


def check_client_secret(vault: Vault, app: PartnerApp, secret: str) -> bool:
    if app.client_secret_hash is None or not secret:
        return False
    return constant_time_equals(app.client_secret_hash, digest(vault, secret, kind="secret"))


# --- referencing ------------------------------------------------------------------------


@dataclass(frozen=True)
class NewApp:
    name: str
    description: str
    homepage: str | None
    redirect_uris: list[str]
    scopes: list[AppScope]
    confidential: bool


def check_redirect_uri(uri: str) -> str:
    """A redirect URI as OAuth 2.1 wants it: absolute, no fragment, https; or http on the
    loopback interface, or a private-use scheme (`com.example.app:/cb`) for native apps
    (RFC 8252). Compared later as an exact string."""
    if not uri or len(uri) > MAX_URI or uri != uri.strip():
        raise Invalid(f"A redirect URI has 1 to {MAX_URI} characters.", field="redirect_uris")
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise Invalid("A redirect URI must be an absolute URI.", field="redirect_uris") from None
    if parts.fragment or "#" in uri:
        raise Invalid("A redirect URI has no fragment.", field="redirect_uris")
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return uri
    if parts.scheme == "http" and (host in _LOOPBACK):
        return uri
    if "." in parts.scheme and parts.scheme not in ("http", "https") and parts.path:
        return uri  # a private-use scheme: reverse domain name of the app
    raise Invalid(
        "A redirect URI uses https, or http on the loopback interface, or the private-use "
        "scheme of a native app (com.example.app:/callback).",
        field="redirect_uris",
    )


def _homepage(value: str | None) -> str | None:
    value = (value or "").strip() or None
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or len(value) > MAX_URI:
        raise Invalid("The homepage is an http(s) URL.", field="homepage")
    return value


def _client_id(name: str) -> str:
    """Readable and unique: the app's name as a slug, then random hex digits. It names the
    app's list of persisted documents too (`espace-sante documents load --client`)."""
    slug = _CLIENT_SLUG.sub("-", name.lower()).strip("-")[:40].strip("-") or "app"
    return persisted.check_client(f"{slug}-{secrets.token_hex(6)}")


def _checked(new: NewApp) -> NewApp:
    name = " ".join(new.name.split())
    if not name or len(name) > MAX_NAME:
        raise Invalid(f"A name has 1 to {MAX_NAME} characters.", field="name")
    description = new.description.strip()
    if not description or len(description) > MAX_DESCRIPTION:
        raise Invalid(f"A description has 1 to {MAX_DESCRIPTION} characters.", field="description")
    if not new.redirect_uris or len(new.redirect_uris) > MAX_REDIRECT_URIS:
        raise Invalid(
            f"An app registers 1 to {MAX_REDIRECT_URIS} redirect URIs.", field="redirect_uris"
        )
    uris = list(dict.fromkeys(check_redirect_uri(uri) for uri in new.redirect_uris))
    if not new.scopes:
        raise Invalid("An app asks for at least one scope.", field="scopes")
    scopes = sorted(set(new.scopes), key=list(AppScope).index)
    return NewApp(name, description, _homepage(new.homepage), uris, scopes, new.confidential)


@dataclass(frozen=True)
class Registered:
    app: PartnerApp
    client_secret: str | None  # shown once; None for a public client
    documents: persisted.LoadReport | None


async def register_app(
    new: NewApp,
    *,
    documents: persisted.Manifest | None,
    registered_by: str,
    vault: Vault,
    client_id: str | None = None,
) -> Registered:
    """References an app and registers its documents on its list, at once or not at all.
    `client_id` is made from the name unless given (the demo's app has a fixed one)."""
    new = _checked(new)
    secret = secrets.token_urlsafe(32) if new.confidential else None
    async with in_transaction():
        app = await PartnerApp.create(
            name=new.name,
            description=new.description,
            homepage=new.homepage,
            client_id=persisted.check_client(client_id) if client_id else _client_id(new.name),
            client_secret_hash=digest(vault, secret, kind="secret") if secret else None,
            redirect_uris=new.redirect_uris,
            scopes=[scope.value for scope in new.scopes],
            registered_by=registered_by,
        )
        report = None
        if documents is not None and documents.entries:
            report = await persisted.load_manifest(
                documents, client=app.client_id, registered_by=registered_by
            )
    return Registered(app, secret, report)


async def list_apps() -> list[PartnerApp]:
    return await PartnerApp.all().order_by("name", "id")


# --- granting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewCode:
    app_id: UUID
    patient_id: UUID
    granted_by_id: UUID
    redirect_uri: str
    scopes: list[str]
    code_challenge: str
    code_challenge_method: str


async def issue_code(code: str, new: NewCode, *, vault: Vault, now: datetime) -> None:
    """Stores the code Authlib generated for an authorisation the patient gave."""
    await AuthorizationCode.create(
        code_hash=digest(vault, code, kind="code"),
        app_id=new.app_id,
        patient_id=new.patient_id,
        granted_by_id=new.granted_by_id,
        redirect_uri=new.redirect_uri,
        scopes=new.scopes,
        code_challenge=new.code_challenge,
        code_challenge_method=new.code_challenge_method,
        expires_at=now + CODE_TTL,
    )


async def find_client(client_id: str | None) -> PartnerApp | None:
    if not client_id or len(client_id) > 64 or not client_id.isprintable():
        return None  # a NUL would also fail PostgreSQL's text comparison
    return await PartnerApp.get_or_none(client_id=client_id)


async def find_code(code: str | None, *, vault: Vault) -> AuthorizationCode | None:
    if not code or not code.startswith(CODE_PREFIX):
        return None
    return await AuthorizationCode.get_or_none(code_hash=digest(vault, code, kind="code"))


async def find_token(token: str | None, *, vault: Vault) -> AppToken | None:
    """The token row of an access or a refresh token (told apart by their prefixes), with
    its grant and app."""
    if not token:
        return None
    if token.startswith(ACCESS_PREFIX):
        query = AppToken.filter(access_hash=digest(vault, token, kind="access-token"))
    elif token.startswith(REFRESH_PREFIX):
        query = AppToken.filter(refresh_hash=digest(vault, token, kind="refresh-token"))
    else:
        return None
    return await query.prefetch_related("grant", "grant__app").first()


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    scopes: list[str]


def _token_row(grant_id: UUID, issued: IssuedTokens, vault: Vault, now: datetime) -> AppToken:
    return AppToken(
        grant_id=grant_id,
        access_hash=digest(vault, issued.access_token, kind="access-token"),
        refresh_hash=digest(vault, issued.refresh_token, kind="refresh-token"),
        scopes=issued.scopes,
        access_expires_at=now + ACCESS_TOKEN_TTL,
        refresh_expires_at=now + REFRESH_TOKEN_TTL,
    )


async def exchange_code(
    code_id: UUID, issued: IssuedTokens, *, vault: Vault, now: datetime
) -> AppGrant:
    """The code used (once: Conflict if it already was, or has expired), the grant it stands
    for, and its first tokens, together. A new grant of an app to a space replaces its
    earlier one (whose tokens die). A code that was already used is a reuse: the grant its
    first exchange created ends with its tokens, in the transaction that refuses it."""
    async with in_transaction() as conn:
        claimed = (
            await AuthorizationCode.filter(id=code_id, used_at=None, expires_at__gt=now)
            .using_db(conn)
            .update(used_at=now)
        )
        if claimed != 1:
            await _revoke_from_code(code_id, now, conn)
            grant = None
        else:
            code = await AuthorizationCode.get(id=code_id, using_db=conn)
            earlier = [
                UUID(str(pk))
                for pk in await AppGrant.filter(
                    app_id=code.app_id, patient_id=code.patient_id, revoked_at=None
                )
                .using_db(conn)
                .values_list("id", flat=True)
            ]
            await _end_grants(earlier, now, conn)
            grant = await AppGrant.create(
                app_id=code.app_id,
                patient_id=code.patient_id,
                granted_by_id=code.granted_by_id,
                scopes=code.scopes,
                using_db=conn,
            )
            await AuthorizationCode.filter(id=code_id).using_db(conn).update(grant_id=grant.id)
            await _token_row(grant.id, issued, vault, now).save(using_db=conn)
    if grant is None:  # raised after the commit: the revocation stays
        raise Conflict("This authorisation code was already used or has expired.")
    return grant


async def _revoke_from_code(code_id: UUID, now: datetime, conn: BaseDBAsyncClient) -> int:
    """The grant (and so every token) issued from a code that was already used; 0 when the
    code was never exchanged (merely expired) or its grant already ended."""
    found = (
        await AuthorizationCode.filter(id=code_id, used_at__isnull=False, grant_id__isnull=False)
        .using_db(conn)
        .values_list("grant_id", flat=True)
    )
    if not found:
        return 0
    return await _end_grants([_uuid(found[0])], now, conn)


async def refuse_reused_code(code_id: UUID, *, now: datetime) -> int:
    """A used code came back (OAuth 2.1 §4.1.3, RFC 6749 §4.1.2): the tokens already issued
    from it are revoked, with their grant, before the exchange is refused. How many grants
    ended (0 or 1)."""
    async with in_transaction() as conn:
        return await _revoke_from_code(code_id, now, conn)


# --- purge ------------------------------------------------------------------------------

# A used code is kept this long after it expires, so that a replay still revokes what it
# gave (`refuse_reused_code`); after that it is only an unknown code.
CODE_KEPT = timedelta(days=1)


async def purge_expired(now: datetime) -> int:
    """Deletes the credentials that can serve no more: codes past their expiry (by CODE_KEPT),
    tokens whose refresh token has expired, tokens revoked without a rotation (a rotated
    one is kept until it expires, to detect its reuse), and every token of an ended grant.
    The grants stay (what a space granted, and when). How many rows went."""
    async with in_transaction() as conn:
        codes = await (
            AuthorizationCode.filter(expires_at__lte=now - CODE_KEPT).using_db(conn).delete()
        )
        ended = AppGrant.filter(revoked_at__isnull=False).values("id")
        tokens = await (
            AppToken.filter(
                Q(refresh_expires_at__lte=now)
                | Q(revoked_at__isnull=False, rotated_at__isnull=True)
                | Q(grant_id__in=Subquery(ended))
            )
            .using_db(conn)
            .delete()
        )
    return int(codes) + int(tokens)


async def rotate_refresh(
    token_id: UUID, issued: IssuedTokens, *, vault: Vault, now: datetime
) -> None:
    """The refresh token used (once: Conflict if it already was) and the next pair issued.
    The old access token dies with it."""
    async with in_transaction() as conn:
        used = (
            await AppToken.filter(
                id=token_id, rotated_at=None, revoked_at=None, refresh_expires_at__gt=now
            )
            .using_db(conn)
            .update(rotated_at=now, revoked_at=now)
        )
        if used != 1:
            raise Conflict("This refresh token was already used.")
        token = await AppToken.get(id=token_id, using_db=conn)
        live = await AppGrant.filter(id=token.grant_id, revoked_at=None).using_db(conn).exists()
        if not live:
            raise Conflict("This grant was revoked.")
        await _token_row(token.grant_id, issued, vault, now).save(using_db=conn)


async def _end_grants(grant_ids: list[UUID], now: datetime, conn: BaseDBAsyncClient) -> int:
    if not grant_ids:
        return 0
    await (
        AppToken.filter(grant_id__in=grant_ids, revoked_at=None)
        .using_db(conn)
        .update(revoked_at=now)
    )
    return int(
        await AppGrant.filter(id__in=grant_ids, revoked_at=None)
        .using_db(conn)
        .update(revoked_at=now)
    )


async def end_grant(grant_id: UUID, *, now: datetime) -> None:
    """The grant and every token issued under it, dead at once (a revoked refresh token, a
    reused one)."""
    async with in_transaction() as conn:
        await _end_grants([grant_id], now, conn)


async def revoke_token(token_id: UUID, *, now: datetime) -> None:
    """One access token (and its refresh token) revoked, as RFC 7009 lets a server do."""
    await AppToken.filter(id=token_id, revoked_at=None).update(revoked_at=now)


async def revoke_app_access(app_id: UUID, patient_id: UUID, *, now: datetime) -> int:
    """The patient side takes back what it granted an app: its grants to that space end, and
    their tokens stop working at once. How many grants ended (NotFound for none)."""
    async with in_transaction() as conn:
        ids = [
            UUID(str(pk))
            for pk in await AppGrant.filter(app_id=app_id, patient_id=patient_id, revoked_at=None)
            .using_db(conn)
            .values_list("id", flat=True)
        ]
        if not ids:
            raise NotFound("This app holds no grant for this space.")
        return await _end_grants(ids, now, conn)


async def end_grants_of_space(patient_id: UUID, *, now: datetime, using_db: Any = None) -> int:
    """A closing space ends every grant to it (a reopened space grants afresh)."""
    ids = [
        UUID(str(pk))
        for pk in await AppGrant.filter(patient_id=patient_id, revoked_at=None)
        .using_db(using_db)
        .values_list("id", flat=True)
    ]
    if using_db is not None:
        return await _end_grants(ids, now, using_db)
    async with in_transaction() as conn:
        return await _end_grants(ids, now, conn)


# --- grants in force --------------------------------------------------------------------


def in_force(
    *,
    patient_id: UUID,
    granted_by_id: UUID,
    status: SpaceStatus | str | None,
    birth_date: date,
    granter_status: SpaceStatus | str | None,
    linked: bool,
    today: date,
) -> bool:
    """Whether an unrevoked grant still holds (see the module's docstring)."""
    if status != SpaceStatus.ACTIVE:
        return False
    if granted_by_id == patient_id:
        return True
    return linked and granter_status == SpaceStatus.ACTIVE and is_minor(birth_date, today)


@dataclass(frozen=True)
class AppCredentials:
    """Who an access token acts as: an app, under one grant, for one space."""

    app_id: UUID
    client_id: str
    grant_id: UUID
    patient_id: UUID
    scopes: frozenset[AppScope]
    by_representative: bool


# Every app request runs this: one statement, hand-written. {p}1 the token's hash, {p}2 now.
_AUTHENTICATE = """
SELECT t.scopes, g.id AS grant_id, g.patient_id, g.granted_by_id, g.last_used_at,
    a.id AS app_id, a.client_id, p.status, p.birth_date, gb.status AS granter_status,
    EXISTS (SELECT 1 FROM representation r WHERE r.representative_id = g.granted_by_id
        AND r.dependent_id = g.patient_id) AS linked
FROM app_token t
JOIN app_grant g ON g.id = t.grant_id
JOIN partner_app a ON a.id = g.app_id
JOIN patient p ON p.id = g.patient_id
JOIN patient gb ON gb.id = g.granted_by_id
WHERE t.access_hash = {p}1 AND t.revoked_at IS NULL AND t.access_expires_at > {p}2
    AND g.revoked_at IS NULL
"""


def _uuid(value: object) -> UUID:
    return UUID(str(value))  # text on SQLite, uuid on PostgreSQL


def _date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _moment(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _scopes(value: object) -> frozenset[AppScope]:
    raw: Any = json.loads(value) if isinstance(value, str | bytes) else value
    return frozenset(AppScope(s) for s in raw or [])


async def authenticate_access_token(
    token: str, *, vault: Vault, today: date, now: datetime
) -> AppCredentials | None:
    """The app, grant and space behind an access token in force; None otherwise. Notes the
    grant's last use (at most once per LAST_USE_PRECISION)."""
    if not token.startswith(ACCESS_PREFIX):
        return None
    db = AppToken._meta.db
    sql = _AUTHENTICATE.format(p=parameter_prefix(db))
    rows = await db.execute_query_dict(sql, [digest(vault, token, kind="access-token"), now])
    if not rows:
        return None
    row = rows[0]
    patient_id, granted_by_id = _uuid(row["patient_id"]), _uuid(row["granted_by_id"])
    if not in_force(
        patient_id=patient_id,
        granted_by_id=granted_by_id,
        status=row["status"],
        birth_date=_date(row["birth_date"]),
        granter_status=row["granter_status"],
        linked=bool(row["linked"]),
        today=today,
    ):
        return None
    grant_id = _uuid(row["grant_id"])
    last_used = _moment(row["last_used_at"])
    if last_used is None or last_used < now - LAST_USE_PRECISION:
        # Conditional: concurrent requests write it once.
        stale = AppGrant.filter(id=grant_id)
        if last_used is not None:
            stale = stale.filter(last_used_at__lt=now - LAST_USE_PRECISION)
        else:
            stale = stale.filter(last_used_at=None)
        await stale.update(last_used_at=now)
    return AppCredentials(
        app_id=_uuid(row["app_id"]),
        client_id=str(row["client_id"]),
        grant_id=grant_id,
        patient_id=patient_id,
        scopes=_scopes(row["scopes"]),
        by_representative=granted_by_id != patient_id,
    )


async def grants_in_force(patient_id: UUID, *, today: date) -> list[AppGrant]:
    """The grants a space holds now, each with its app: what `Patient.appGrants` lists."""
    grants = await AppGrant.filter(patient_id=patient_id, revoked_at=None).prefetch_related(
        "app", "patient", "granted_by"
    )
    granters = {g.granted_by_id for g in grants if g.granted_by_id != patient_id}
    links = set(
        await Representation.filter(
            dependent_id=patient_id, representative_id__in=list(granters)
        ).values_list("representative_id", flat=True)
    )
    linked = {_uuid(pk) for pk in links}
    kept = [
        g
        for g in grants
        if in_force(
            patient_id=patient_id,
            granted_by_id=g.granted_by_id,
            status=g.patient.status,
            birth_date=g.patient.birth_date,
            granter_status=g.granted_by.status,
            linked=g.granted_by_id in linked,
            today=today,
        )
    ]
    return sorted(kept, key=lambda g: (g.app.name, str(g.app_id)))


__all__ = [
    "ACCESS_TOKEN_TTL",
    "APP_STREAMS",
    "CODE_KEPT",
    "CODE_TTL",
    "REFRESH_TOKEN_TTL",
    "SCOPE_MEANINGS",
    "AppCredentials",
    "AppGrant",
    "AppScope",
    "AppToken",
    "AuthorizationCode",
    "IssuedTokens",
    "NewApp",
    "NewCode",
    "PartnerApp",
    "Registered",
    "authenticate_access_token",
    "check_client_secret",
    "check_redirect_uri",
    "digest",
    "end_grant",
    "end_grants_of_space",
    "exchange_code",
    "find_client",
    "find_code",
    "find_token",
    "grants_in_force",
    "in_force",
    "issue_code",
    "list_apps",
    "new_access_token",
    "new_code",
    "new_refresh_token",
    "purge_expired",
    "refuse_reused_code",
    "register_app",
    "revoke_app_access",
    "revoke_token",
    "rotate_refresh",
]
