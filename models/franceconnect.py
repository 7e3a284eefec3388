"""Login through FranceConnect (DOMAIN.md, "FranceConnect"): what is stored and decided.

The edge (api/franceconnect.py) speaks OpenID Connect to the provider; this module keeps
- the pending authorisation requests: state and nonce (as hashes) and the PKCE verifier,
  in the database so that whichever worker takes the callback finds them; single use and
  short-lived;
- the login of the one person the identity matches (models/franceconnect_matching.py);
- the single-use tickets (60 s) the front end exchanges for a session;
- the ID token, encrypted, beside the session it opened, for the provider's logout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.account import Account, Role
from models.base import Entity, paris_today
from models.crypto import Vault, constant_time_equals, new_token, row_context, token_hash
from models.errors import Invalid, Unauthenticated
from models.franceconnect_matching import LoginRefused, ProvenIdentity, Refusal, find_person
from models.identifiers import normalize_email
from models.patient import Patient, SpaceStatus, is_minor
from models.session import LoginResult, Session, logout, open_session

REQUEST_VALIDITY = timedelta(minutes=10)
TICKET_VALIDITY = timedelta(seconds=60)
TICKET_FAILED = "Invalid or expired login ticket."


class AuthorizationRequest(Entity):
    """A login sent to the provider, waiting for its callback."""

    state_hash = fields.CharField(max_length=64, unique=True)
    nonce_hash = fields.CharField(max_length=64)
    # Encrypted and bound to this row; null when the provider offers no PKCE.
    code_verifier = fields.BinaryField(null=True)
    patient_hint = fields.UUIDField(null=True)
    expires_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "franceconnect_request"


class LoginTicket(Entity):
    """What the callback hands the front end, exchanged once for a session."""

    ticket_hash = fields.CharField(max_length=64, unique=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="franceconnect_tickets", on_delete=fields.CASCADE
    )
    account_id: UUID
    id_token = fields.BinaryField()  # encrypted, bound to this row
    expires_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "franceconnect_ticket"


class ProviderSession(Entity):
    """The ID token a session was opened with: its `id_token_hint` at the provider's logout."""

    session: fields.OneToOneRelation[Session] = fields.OneToOneField(
        "models.Session", related_name="provider_session", on_delete=fields.CASCADE
    )
    session_id: UUID
    id_token = fields.BinaryField()  # encrypted, bound to this row

    class Meta:
        table = "franceconnect_session"


def _sealed(vault: Vault, table: str, row_id: UUID, value: str) -> bytes:
    return vault.encrypt(value, context=row_context(table, "id_token", row_id))


def _opened(vault: Vault, table: str, row_id: UUID, sealed: bytes) -> str:
    return vault.decrypt(sealed, context=row_context(table, "id_token", row_id))


# --- the authorisation request ----------------------------------------------------------


@dataclass(frozen=True)
class StartedLogin:
    state: str
    nonce: str
    code_verifier: str | None


@dataclass(frozen=True)
class PendingLogin:
    nonce_hash: str
    code_verifier: str | None
    patient_hint: UUID | None

    def nonce_matches(self, nonce: object) -> bool:
        return isinstance(nonce, str) and constant_time_equals(token_hash(nonce), self.nonce_hash)


async def start_login(
    *, vault: Vault, pkce: bool, patient_hint: UUID | None, now: datetime
) -> StartedLogin:
    """A fresh state, nonce and PKCE verifier (256 random bits each), stored as hashes (the
    verifier encrypted); the requests that expired unanswered go as new ones come."""
    await AuthorizationRequest.filter(expires_at__lte=now).delete()
    state, nonce = new_token(), new_token()
    verifier = new_token() if pkce else None  # 43 characters of RFC 7636's alphabet
    request_id = uuid4()
    await AuthorizationRequest.create(
        id=request_id,
        state_hash=token_hash(state),
        nonce_hash=token_hash(nonce),
        code_verifier=vault.encrypt(
            verifier, context=row_context("franceconnect_request", "code_verifier", request_id)
        )
        if verifier
        else None,
        patient_hint=patient_hint,
        expires_at=now + REQUEST_VALIDITY,
    )
    return StartedLogin(state=state, nonce=nonce, code_verifier=verifier)


async def take_request(state: str, *, vault: Vault, now: datetime) -> PendingLogin:
    """The request this state was issued for, used up (deleted): a forged state, a second
    callback with the same one, or one past its 10 minutes is a PROVIDER_ERROR."""
    row = await AuthorizationRequest.get_or_none(state_hash=token_hash(state), expires_at__gt=now)
    # Conditional: of two callbacks carrying one state, one takes it.
    if row is None or await AuthorizationRequest.filter(id=row.id).delete() != 1:
        raise LoginRefused(Refusal.PROVIDER_ERROR, "unknown, used or expired state")
    verifier = None
    if row.code_verifier is not None:
        context = row_context("franceconnect_request", "code_verifier", row.id)
        verifier = vault.decrypt(row.code_verifier, context=context)
    return PendingLogin(
        nonce_hash=row.nonce_hash, code_verifier=verifier, patient_hint=row.patient_hint
    )


# --- the login --------------------------------------------------------------------------


async def complete_login(
    identity: ProvenIdentity,
    *,
    id_token: str,
    patient_hint: UUID | None,
    vault: Vault,
    now: datetime,
) -> str:
    """A ticket for the one person the identity matches: a PENDING space is activated (the
    person proved who they are) and, for a space without credentials, an account is made;
    OPPOSED, CLOSED and minors' spaces are refused. A refusal writes nothing."""
    patient = await find_person(identity, vault=vault)
    if patient_hint is not None and patient.id != patient_hint:
        raise LoginRefused(Refusal.IDENTITY_NOT_FOUND, "not the person the front end expected")
    if is_minor(patient.birth_date, paris_today(now)):
        raise LoginRefused(Refusal.SPACE_UNAVAILABLE, "a minor")  # their representative logs in
    if patient.status not in (SpaceStatus.PENDING, SpaceStatus.ACTIVE):
        raise LoginRefused(Refusal.SPACE_UNAVAILABLE, f"space {patient.status}")
    await LoginTicket.filter(expires_at__lte=now).delete()
    for retry in (False, True):
        try:
            return await _issue_ticket(patient, identity, id_token, vault=vault, now=now)
        except IntegrityError:
            # A concurrent login made the account, or took the e-mail, meanwhile.
            if retry:
                raise
    raise AssertionError("unreachable")


async def _issue_ticket(
    patient: Patient, identity: ProvenIdentity, id_token: str, *, vault: Vault, now: datetime
) -> str:
    async with in_transaction() as conn:
        # Conditional, so an opposition or a closing that came first is never overwritten.
        await (
            Patient.filter(id=patient.id, status=SpaceStatus.PENDING)
            .using_db(conn)
            .update(status=SpaceStatus.ACTIVE, activated_at=now)
        )
        now_is = await Patient.filter(id=patient.id).using_db(conn).only("id", "status").first()
        if now_is is None or now_is.status is not SpaceStatus.ACTIVE:
            raise LoginRefused(Refusal.SPACE_UNAVAILABLE, "space changed meanwhile")
        account = await Account.get_or_none(patient_id=patient.id, using_db=conn)
        if account is None:
            account = await Account.create(
                email=await _free_email(patient, identity, conn),
                password_hash=None,  # credentials come later, with a re-issued code
                role=Role.PATIENT,
                patient_id=patient.id,
                using_db=conn,
            )
        ticket, ticket_id = new_token(), uuid4()
        await LoginTicket.create(
            id=ticket_id,
            ticket_hash=token_hash(ticket),
            account_id=account.id,
            id_token=_sealed(vault, "franceconnect_ticket", ticket_id, id_token),
            expires_at=now + TICKET_VALIDITY,
            using_db=conn,
        )
    return ticket


async def _free_email(patient: Patient, identity: ProvenIdentity, conn: BaseDBAsyncClient) -> str:
    """The account's address: the one FranceConnect gives, else the enrolment contact, unless
    another account holds it; failing both, an address that receives nothing (RFC 2606)."""
    for candidate in (identity.email, patient.contact_email):
        try:
            email = normalize_email(candidate) if candidate else None
        except Invalid:
            continue
        if email and not await Account.filter(email=email).using_db(conn).exists():
            return email
    return f"franceconnect-{patient.id.hex}@espace-sante.invalid"


async def exchange_ticket(
    ticket: str, *, vault: Vault, ttl: timedelta, now: datetime
) -> LoginResult:
    """The session a ticket stands for, once, within its 60 seconds; the ID token moves to
    the session. A used, expired or unknown ticket is UNAUTHENTICATED."""
    row = await LoginTicket.get_or_none(ticket_hash=token_hash(ticket))
    if row is None:
        raise Unauthenticated(TICKET_FAILED)
    await _forget_ended_sessions(now)
    async with in_transaction() as conn:
        # Conditional: of two exchanges of one ticket, one gets a session.
        taken = await LoginTicket.filter(id=row.id, expires_at__gt=now).using_db(conn).delete()
        account = await Account.get_or_none(id=row.account_id, using_db=conn)
        if taken != 1 or account is None or not await _live(account, conn):
            raise Unauthenticated(TICKET_FAILED)
        result = await open_session(account, ttl=ttl, now=now)  # in this transaction
        assert result.token is not None
        session = await Session.get(token_hash=token_hash(result.token), using_db=conn)
        kept_id = uuid4()
        id_token = _opened(vault, "franceconnect_ticket", row.id, row.id_token)
        await ProviderSession.create(
            id=kept_id,
            session_id=session.id,
            id_token=_sealed(vault, "franceconnect_session", kept_id, id_token),
            using_db=conn,
        )
    return result


async def _live(account: Account, conn: BaseDBAsyncClient) -> bool:
    """The space may have been closed between the callback and the exchange."""
    return (
        await Patient.filter(id=account.patient_id, status=SpaceStatus.ACTIVE)
        .using_db(conn)
        .exists()
    )


async def end_session(session_id: UUID, *, vault: Vault, now: datetime) -> str | None:
    """Log out, and give the ID token the session was opened with (null for a password
    login); the stored token goes with the session."""
    async with in_transaction() as conn:
        kept = await ProviderSession.get_or_none(session_id=session_id, using_db=conn)
        if kept is not None:
            await ProviderSession.filter(id=kept.id).using_db(conn).delete()
        await logout(session_id, now=now)  # in this transaction
    if kept is None:
        return None
    return _opened(vault, "franceconnect_session", kept.id, kept.id_token)


async def _forget_ended_sessions(now: datetime) -> None:
    """The ID tokens of sessions that expired or were revoked are of no more use: they go as
    new ones come."""
    ended = await ProviderSession.filter(
        Q(session__expires_at__lte=now) | Q(session__revoked_at__isnull=False)
    ).values_list("id", flat=True)
    if ended:
        await ProviderSession.filter(id__in=list(ended)).delete()


async def forget_session(session_id: UUID) -> None:
    """A plain logout of a FranceConnect session: its ID token is of no more use."""
    await ProviderSession.filter(session_id=session_id).delete()
