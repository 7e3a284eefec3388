"""Login sessions (opaque bearer tokens, stored only as hashes) and two-factor challenges."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID

from tortoise import fields
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from models import catalogue, ratelimit
from models.access import ANONYMOUS, Actor
from models.account import Account, Role
from models.base import Entity, parameter_prefix, paris_today, utcnow
from models.crypto import (
    Vault,
    code_hash,
    constant_time_equals,
    new_login_code,
    new_token,
    token_hash,
)
from models.errors import Unauthenticated
from models.outbox import Mailer, deliver, queue_email
from models.passwords import hash_password, needs_rehash, verify_password
from models.patient import Patient, SpaceStatus
from models.sqlite_thread import select_rows

logger = logging.getLogger(__name__)


class Session(Entity):
    token_hash = fields.CharField(max_length=64, unique=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="sessions", on_delete=fields.CASCADE
    )
    account_id: UUID
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "session"
        # The purge's WHERE (`purge_ended_sessions`), on a table of every login.
        indexes = (("expires_at",), ("revoked_at",))


class LoginChallenge(Entity):
    """A pending two-factor login: the one-time code went out by e-mail."""

    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="challenges", on_delete=fields.CASCADE
    )
    account_id: UUID
    code_hash = fields.CharField(max_length=64)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    failures = fields.IntField(default=0)

    class Meta:
        table = "login_challenge"
        indexes = (("expires_at",),)  # the purge's WHERE (`purge_ended_challenges`)


# --- operations -------------------------------------------------------------------------

LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_CLIENT = 20
CHALLENGE_VALIDITY = timedelta(minutes=10)
MAX_CHALLENGE_FAILURES = 5
LOGIN_FAILED = "Invalid e-mail or password."
CODE_FAILED = "Invalid or expired login code."


@dataclass(frozen=True)
class LoginPolicy:
    """How login works here: plain values the edge takes from its settings."""

    two_factor: bool
    session_ttl: timedelta
    mailer: Mailer


@dataclass(frozen=True)
class LoginResult:
    account: Account
    token: str | None = None
    expires_at: datetime | None = None
    challenge: LoginChallenge | None = None


async def _reserve_attempt(
    vault: Vault, email: str, client: str, now: datetime
) -> ratelimit.Reservation:
    """One password or code attempt for this e-mail from this client address, taken before
    the check (RATE_LIMITED past either limit); released by the caller when it succeeds."""
    return await ratelimit.reserve(
        [
            ratelimit.Limit(
                "login:" + vault.keyed_hash(email, purpose="login-email"),
                MAX_FAILURES_PER_EMAIL,
                LOGIN_WINDOW,
            ),
            ratelimit.Limit(
                "client:" + vault.keyed_hash(client, purpose="login-client"),
                MAX_FAILURES_PER_CLIENT,
                LOGIN_WINDOW,
            ),
        ],
        now=now,
    )


async def confirm_password(
    account_id: UUID | None,
    password: str,
    *,
    client: str,
    vault: Vault,
    now: datetime | None = None,
) -> bool:
    """A logged-in caller re-enters their password: limited as their logins are, on the same
    counters (a wrong re-entry is a wrong password for that e-mail), RATE_LIMITED past them."""
    account = await Account.get_or_none(id=account_id) if account_id else None
    if account is None:
        return False
    attempt = await _reserve_attempt(vault, account.email, client, now or utcnow())
    if not await verify_password(account.password_hash, password):
        return False
    await attempt.release()
    return True


async def open_session(account: Account, *, ttl: timedelta, now: datetime) -> LoginResult:
    token = new_token()
    expires_at = now + ttl
    await Session.create(token_hash=token_hash(token), account_id=account.id, expires_at=expires_at)
    return LoginResult(account=account, token=token, expires_at=expires_at)


async def login(
    email: str,
    password: str,
    *,
    client: str,
    vault: Vault,
    policy: LoginPolicy,
    now: datetime | None = None,
) -> LoginResult:
    now = now or utcnow()
    email = email.strip().lower()
    # A failure keeps its reserved attempt: it counts.
    attempt = await _reserve_attempt(vault, email, client, now)
    # No account has an address longer than the column (the ORM refuses to compare one).
    fits = len(email) <= Account._meta.fields_map["email"].max_length  # type: ignore[attr-defined]
    account = await Account.get_or_none(email=email) if fits else None
    if not await verify_password(account.password_hash if account else None, password):
        raise Unauthenticated(LOGIN_FAILED)
    assert account is not None
    if not await _may_log_in(account):
        raise Unauthenticated(LOGIN_FAILED)
    await attempt.release()
    if account.password_hash and needs_rehash(account.password_hash):
        account.password_hash = await hash_password(password)
        await account.save(update_fields=["password_hash"])
    if not policy.two_factor:
        return await open_session(account, ttl=policy.session_ttl, now=now)
    code = new_login_code()
    async with in_transaction() as conn:
        challenge = await LoginChallenge.create(
            account_id=account.id,
            code_hash=code_hash(vault, code),
            expires_at=now + CHALLENGE_VALIDITY,
            using_db=conn,
        )
        message = await queue_email(
            to=account.email,
            subject="Votre code de connexion Mon espace santé",
            body=(
                "Votre code de connexion à usage unique : {code}\n\n"
                "Il est valable 10 minutes. Si vous n'êtes pas à l'origine de cette demande, "
                "changez votre mot de passe.\n"
            ),
            secret=code,
            kind="login_code",
            vault=vault,
            using_db=conn,
        )
    try:
        await deliver(message.id, policy.mailer)
    except Exception:
        logger.exception("login code delivery failed; the outbox job will retry")
    return LoginResult(account=account, challenge=challenge)


async def _may_log_in(account: Account) -> bool:
    if account.role is not Role.PATIENT:
        return True
    # A closed space's holder may still log in, to ask for deletion; an opposed one may not.
    status = await _space_status(account.patient_id)
    return status in (SpaceStatus.ACTIVE, SpaceStatus.CLOSED)


async def _space_status(patient_id: UUID | None) -> SpaceStatus | None:
    row = await Patient.filter(id=patient_id).only("id", "status").first()
    return row.status if row else None


async def verify_login(
    challenge_id: UUID | None,
    code: str,
    *,
    client: str,
    vault: Vault,
    policy: LoginPolicy,
    now: datetime | None = None,
) -> LoginResult:
    now = now or utcnow()
    challenge = (
        await LoginChallenge.get_or_none(id=challenge_id).prefetch_related("account")
        if challenge_id
        else None
    )
    email = challenge.account.email if challenge else ""
    # A failure keeps its reserved attempts, of the e-mail and of the challenge: they count.
    attempt = await _reserve_attempt(vault, email, client, now)
    if challenge is None or not await _reserve_challenge_attempt(challenge.id, now):
        raise Unauthenticated(CODE_FAILED)
    if not constant_time_equals(challenge.code_hash, code_hash(vault, code.strip())):
        raise Unauthenticated(CODE_FAILED)
    # Used, and its attempt given back; conditional, so a code logs in once.
    used = await LoginChallenge.filter(id=challenge.id, used_at=None).update(
        used_at=now, failures=F("failures") - 1
    )
    await attempt.release()
    if used != 1:
        raise Unauthenticated(CODE_FAILED)
    if not await _may_log_in(challenge.account):
        raise Unauthenticated(CODE_FAILED)
    return await open_session(challenge.account, ttl=policy.session_ttl, now=now)


async def _reserve_challenge_attempt(challenge_id: UUID, now: datetime) -> bool:
    """One attempt of a live challenge, counted before the code is compared: one conditional
    UPDATE, so of concurrent guesses at most MAX_CHALLENGE_FAILURES are ever compared."""
    taken = await LoginChallenge.filter(
        id=challenge_id,
        used_at=None,
        expires_at__gt=now,
        failures__lt=MAX_CHALLENGE_FAILURES,
    ).update(failures=F("failures") + 1)
    return taken == 1


# Every request runs this: one statement, hand-written (the ORM takes ~1 ms to build it).
# Numbered parameters: {p}1 the token's hash, {p}2 the moment.
_AUTHENTICATE = """
SELECT s.id, a.id AS account_id, a.role, a.patient_id, a.professional_id, a.operator_id,
    p.status AS patient_status
FROM session s
JOIN account a ON a.id = s.account_id
LEFT JOIN patient p ON p.id = a.patient_id
WHERE s.token_hash = {p}1 AND s.revoked_at IS NULL AND s.expires_at > {p}2
"""


# Written once per parameter style (`parameter_prefix`).
_AUTHENTICATE_FOR = {p: _AUTHENTICATE.format(p=p) for p in ("?", "$")}


def _uuid(value: object) -> UUID | None:
    return None if value is None else UUID(str(value))  # text on SQLite, uuid on PostgreSQL


async def authenticate(
    token: str | None, *, vault: Vault | None = None, now: datetime | None = None
) -> Actor:
    """The actor behind a bearer token; anonymous for none, UNAUTHENTICATED for a bad one.

    A partner app's access token (models/catalogue.py) is told apart by its prefix; its
    hash is keyed, so it is known only where the `vault` is given."""
    if not token:
        return ANONYMOUS
    now = now or utcnow()
    if token.startswith(catalogue.ACCESS_PREFIX):
        return await _authenticate_app(token, vault=vault, now=now)
    db = Session._meta.db
    values = [token_hash(token), now]
    # One call on SQLite's thread there (`select_rows`); rows read by column name.
    rows = await select_rows(db, _AUTHENTICATE_FOR[parameter_prefix(db)], values)
    if not rows:
        raise Unauthenticated("The session is invalid or has expired.")
    row = rows[0]
    actor = _session_actor(
        row["role"],
        row["account_id"],
        row["id"],
        row["patient_id"],
        row["professional_id"],
        row["operator_id"],
        row["patient_status"],
    )
    if actor is None:
        raise Unauthenticated("The session is invalid or has expired.")
    return actor


@lru_cache(maxsize=4096)
def _session_actor(
    role_value: Any,
    account_id: object,
    session_id: object,
    patient_id: object,
    professional_id: object,
    operator_id: object,
    patient_status: Any,
) -> Actor | None:
    """The actor of a session's row, as `authenticate` read it; None for a patient whose
    space is neither active nor closed. A function of the row alone, and an Actor is
    immutable: every request of a session whose row reads the same shares one (building
    it, frozen, cost more than the statement that read the row)."""
    role = Role(role_value)
    status: SpaceStatus | None = None
    if role is Role.PATIENT:
        status = SpaceStatus(patient_status) if patient_status else None
        if status not in (SpaceStatus.ACTIVE, SpaceStatus.CLOSED):
            return None
    return Actor(
        role=role,
        account_id=_uuid(account_id),
        session_id=_uuid(session_id),
        patient_id=_uuid(patient_id),
        professional_id=_uuid(professional_id),
        operator_id=_uuid(operator_id),
        patient_status=status,
    )


async def _authenticate_app(token: str, *, vault: Vault | None, now: datetime) -> Actor:
    found = None
    if vault is not None:
        found = await catalogue.authenticate_access_token(
            token, vault=vault, today=paris_today(now), now=now
        )
    if found is None:
        raise Unauthenticated("The access token is invalid, revoked or has expired.")
    return Actor(
        app_id=found.app_id,
        app_client=found.client_id,
        grant_id=found.grant_id,
        acting_for=found.patient_id,
        scopes=found.scopes,
        granted_by_representative=found.by_representative,
    )


def active_session(session: str, moment: str) -> str:
    """SQL selecting a row while the session `session` is live at `moment` (two parameters,
    `active_session_values`): not revoked, not expired. What `session_active` runs, and what
    live delivery joins to its statement (subscriptions/schema.py); hand-written, as
    `Session.filter(id=…, revoked_at=None, expires_at__gt=now).exists()` took longer to
    build than to run."""
    return (
        f"SELECT 1 FROM session WHERE id = {session} AND revoked_at IS NULL"  # noqa: S608
        f" AND expires_at > {moment}"
    )


def active_session_values(session_id: UUID, now: datetime) -> list[object]:
    """The parameters of `active_session`, as the database compares them."""
    expires_at = Session._meta.fields_map["expires_at"]
    return [str(session_id), expires_at.to_db_value(now, Session)]


async def session_active(session_id: UUID, *, now: datetime | None = None) -> bool:
    """Re-checked at every live delivery: a logout, closed space or expiry ends the stream."""
    db = Session._meta.db
    p = parameter_prefix(db)
    sql = active_session(f"{p}1", f"{p}2")
    _, rows = await db.execute_query(sql, active_session_values(session_id, now or utcnow()))
    return bool(rows)


async def logout(session_id: UUID, *, now: datetime | None = None) -> None:
    await Session.filter(id=session_id, revoked_at=None).update(revoked_at=now or utcnow())


# --- purges (run-jobs) ------------------------------------------------------------------

ENDED_KEPT = timedelta(days=1)
PURGE_BATCH = 10_000


async def purge_ended_sessions(now: datetime) -> int:
    """Deletes the sessions that expired or were revoked more than ENDED_KEPT ago (run-jobs);
    how many rows went. A FranceConnect session's stored ID token (ProviderSession) goes
    with its session (ON DELETE CASCADE).

    Why a day: nothing reads an ended session. `authenticate`, `session_active` and the
    live streams want it unrevoked and unexpired, logout and the closing of a space touch
    only unrevoked ones, and the access log keeps no session. Its token is stored as a
    hash and could not authenticate again; the row would only keep who logged in when,
    longer than needed, and grow the table by every login. The day is a margin, not a
    reader's need: a machine whose clock runs ahead (or a `run-jobs --now` typed ahead)
    must not delete a session the other machines still take as live.
    """
    return await _purge(Session, "expires_at <= {p}1 OR revoked_at <= {p}1", now - ENDED_KEPT)


async def purge_ended_challenges(now: datetime) -> int:
    """Deletes the two-factor challenges that expired more than ENDED_KEPT ago (run-jobs);
    how many rows went. A used one goes with them: it is used before it expires (a code is
    compared only while its challenge is live), so it goes at most CHALLENGE_VALIDITY later
    than a day after its use, and the WHERE stays on one indexed column. Nothing reads an
    ended challenge (`verify_login` wants it unused and unexpired); its code is a keyed hash.
    """
    return await _purge(LoginChallenge, "expires_at <= {p}1", now - ENDED_KEPT)


# Hand-written for its RETURNING: the count of the rows of this table that went, on every
# driver (on SQLite the ORM's count also takes in the rows a foreign key's cascade deleted).
# In batches of PURGE_BATCH rows, so that a backlog never holds one long transaction.
_PURGE = (
    "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {ended} LIMIT {batch})"
    " RETURNING id"
)


async def _purge(model: type[Session] | type[LoginChallenge], ended: str, cutoff: datetime) -> int:
    db = model._meta.db
    sql = _PURGE.format(
        table=model._meta.db_table,
        ended=ended.format(p=parameter_prefix(db)),
        batch=int(PURGE_BATCH),
    )
    moment = model._meta.fields_map["expires_at"].to_db_value(cutoff, model)
    total = 0
    while True:
        deleted = len(await db.execute_query_dict(sql, [moment]))
        total += deleted
        # Fewer than a batch: done (or another machine took some of it; the next run ends it).
        if deleted < PURGE_BATCH:
            return total
