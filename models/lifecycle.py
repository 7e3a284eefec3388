"""Activation codes of the space lifecycle (the code itself is never stored)."""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid4

from dateutil.relativedelta import relativedelta
from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models import catalogue, erasure, outbox, ratelimit
from models.access import Actor, relations
from models.account import Account, Role
from models.base import PARIS, Entity, paris_today, utcnow
from models.blobs import BlobStore
from models.crypto import Vault, code_hash, new_activation_code, normalize_code
from models.errors import Conflict, Invalid, NotFound
from models.identifiers import check_password, normalize_email, normalize_nir
from models.outbox import Mailer, OutboxMessage, deliver, queue_email, queue_letter
from models.passwords import hash_password
from models.patient import (
    Patient,
    Representation,
    Sex,
    SpaceStatus,
    is_minor,
    minor_cutoff,
    seal_nir,
)
from models.session import Session, confirm_password

logger = logging.getLogger(__name__)

CODE_VALIDITY_DAYS = 42
MAX_CODE_FAILURES = 5


class Channel(StrEnum):
    EMAIL = "EMAIL"
    POST = "POST"


class ActivationCode(Entity):
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="activation_codes", on_delete=fields.CASCADE
    )
    patient_id: UUID
    code_hash = fields.CharField(max_length=64)
    channel = fields.CharEnumField(Channel, max_length=8)
    sent_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    superseded_at = fields.DatetimeField(null=True)

    class Meta:
        table = "activation_code"


# --- operations -------------------------------------------------------------------------

GENERIC_CODE_ERROR = (
    "The code, NIR or birth date is incorrect, or the code has expired or was already used."
)
EMAIL_TAKEN = "This e-mail address is already in use."
ALREADY_ENROLLED = "A space already exists, or was opposed, for this person."
ARCHIVE_YEARS = 10
DELETION_DELAY_MONTHS = 3
LOCK_RETRY_AFTER = 3600
ONLY_ACTIVE_CLOSES = "Only an active space can be closed."


@dataclass(frozen=True)
class PostalAddress:
    line1: str
    postal_code: str
    city: str
    line2: str | None = None

    def as_text(self) -> str:
        lines = [self.line1, self.line2 or "", f"{self.postal_code} {self.city}"]
        return "\n".join(line for line in lines if line)


@dataclass(frozen=True)
class Enrolment:
    nir: str
    first_name: str
    last_name: str
    birth_date: date
    sex: Sex
    channel: Channel
    email: str | None = None
    postal_address: PostalAddress | None = None
    representative_id: UUID | None = None


def _clean_name(value: str, field_name: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned or len(cleaned) > 100:
        raise Invalid("A name is required (100 characters at most).", field=field_name)
    return cleaned


def _check_address(address: PostalAddress) -> PostalAddress:
    if not address.line1.strip() or not address.city.strip():
        raise Invalid("The postal address needs a street line and a city.", field="postal_address")
    if not re.fullmatch(r"\d{5}", address.postal_code.strip()):
        raise Invalid("A French postal code has 5 digits.", field="postal_address.postal_code")
    return PostalAddress(
        line1=address.line1.strip(),
        line2=(address.line2 or "").strip() or None,
        postal_code=address.postal_code.strip(),
        city=address.city.strip(),
    )


def nir_key(vault: Vault, nir: str) -> str:
    return vault.keyed_hash(nir, purpose="nir")


def _code_message(
    patient: Patient, representative: Patient | None, expires_at: datetime, public_url: str
) -> tuple[str, str]:
    """The subject and body (with the `{code}` placeholder) of an activation code, written
    to whoever acts: the person, or for a minor their legal representative."""
    until = expires_at.astimezone(PARIS).strftime("%d/%m/%Y")
    if representative is None:
        return "Votre code confidentiel Mon espace santé", (
            f"Bonjour {patient.first_name},\n\n"
            "Voici votre code confidentiel Mon espace santé : {code}\n\n"
            f"Vous avez jusqu'au {until} pour :\n"
            f"- activer votre espace sur {public_url}, avec ce code, votre numéro de "
            "sécurité sociale et votre date de naissance, en choisissant votre adresse "
            "e-mail et votre mot de passe ;\n"
            "- ou vous opposer à sa création, avec les mêmes informations.\n"
            "Sans opposition de votre part d'ici là, votre espace sera créé "
            "automatiquement.\n"
        )
    child = f"{patient.first_name} {patient.last_name}"
    return f"Le code confidentiel Mon espace santé de {child}", (
        f"Bonjour {representative.first_name} {representative.last_name},\n\n"
        f"Vous êtes le représentant légal de {child}. Voici le code confidentiel de son "
        "espace Mon espace santé : {code}\n\n"
        f"Vous avez jusqu'au {until} pour :\n"
        f"- activer son espace : connectez-vous à votre propre espace sur {public_url}, "
        f"puis saisissez ce code, le numéro de sécurité sociale et la date de naissance de "
        f"{patient.first_name} ; vous gérerez son espace jusqu'à sa majorité ;\n"
        "- ou vous opposer à sa création, avec les mêmes informations.\n"
        "Sans opposition de votre part d'ici là, son espace sera créé automatiquement.\n"
    )


async def _send_code(
    patient: Patient,
    *,
    channel: Channel,
    vault: Vault,
    now: datetime,
    email: str | None,
    address: PostalAddress | None,
    representative: Patient | None,
    public_url: str,
    using_db: BaseDBAsyncClient,
) -> OutboxMessage:
    """Supersede earlier codes, store a new one (hash only) and queue the message durably."""
    code = new_activation_code()
    await (
        ActivationCode.filter(patient_id=patient.id, superseded_at=None)
        .using_db(using_db)
        .update(superseded_at=now)
    )
    expires_at = now + timedelta(days=CODE_VALIDITY_DAYS)
    await ActivationCode.create(
        patient_id=patient.id,
        code_hash=code_hash(vault, normalize_code(code)),
        channel=channel,
        sent_at=now,
        expires_at=expires_at,
        using_db=using_db,
    )
    await ratelimit.clear("nir:" + patient.nir_hash, using_db=using_db)
    subject, body = _code_message(patient, representative, expires_at, public_url)
    if channel is Channel.EMAIL:
        if not email:
            raise Invalid("An e-mail address is needed for this channel.", field="email")
        return await queue_email(
            to=email,
            subject=subject,
            body=body,
            secret=code,
            kind="activation_code",
            vault=vault,
            patient_id=patient.id,
            using_db=using_db,
        )
    if address is None:
        raise Invalid("A postal address is needed for this channel.", field="postal_address")
    addressee = representative or patient
    recipient = f"{addressee.first_name} {addressee.last_name}\n{address.as_text()}"
    return await queue_letter(
        address=recipient,
        subject=subject,
        body=body,
        secret=code,
        kind="activation_code",
        vault=vault,
        patient_id=patient.id,
        using_db=using_db,
    )


async def enroll_patient(
    data: Enrolment, *, vault: Vault, mailer: Mailer, now: datetime | None = None
) -> Patient:
    now = now or utcnow()
    today = paris_today(now)
    nir = normalize_nir(data.nir)
    first_name = _clean_name(data.first_name, "firstName")
    last_name = _clean_name(data.last_name, "lastName")
    if data.birth_date > today or data.birth_date.year < 1880:
        raise Invalid("The birth date is not plausible.", field="birth_date")
    email = normalize_email(data.email) if data.email else None
    address = _check_address(data.postal_address) if data.postal_address else None
    minor = is_minor(data.birth_date, today)
    representative: Patient | None = None
    send_email = email
    if minor:
        if data.representative_id is None:
            raise Invalid(
                "A minor is enrolled with a legal representative.", field="representative_id"
            )
        representative = await _active_adult(data.representative_id, today)
        if data.channel is Channel.EMAIL:
            # A minor's code goes to the representative, even when the minor has an e-mail
            # of their own (kept as the contact for their 18th birthday).
            send_email = await _account_email(representative.id)
            if send_email is None:
                raise Invalid(
                    "The representative has no e-mail address: send the code by post.",
                    field="representative_id",
                )
    elif data.representative_id is not None:
        raise Invalid("Only a minor has a legal representative.", field="representative_id")
    if data.channel is Channel.EMAIL and send_email is None:
        raise Invalid("An e-mail address is needed for this channel.", field="email")
    if data.channel is Channel.POST and address is None:
        raise Invalid("A postal address is needed for this channel.", field="postal_address")
    hashed = nir_key(vault, nir)
    if await Patient.exists(nir_hash=hashed):
        raise Conflict(ALREADY_ENROLLED)
    try:
        async with in_transaction() as conn:
            patient_id = uuid4()  # chosen here, as the NIR's ciphertext is bound to it
            patient = await Patient.create(
                id=patient_id,
                nir_encrypted=seal_nir(vault, patient_id, nir),
                nir_hash=hashed,
                first_name=first_name,
                last_name=last_name,
                birth_date=data.birth_date,
                sex=data.sex,
                status=SpaceStatus.PENDING,
                contact_email=email,
                postal_address=asdict(address) if address else None,
                using_db=conn,
            )
            if representative is not None:
                await Representation.create(
                    representative_id=representative.id, dependent_id=patient.id, using_db=conn
                )
            message = await _send_code(
                patient,
                channel=data.channel,
                vault=vault,
                now=now,
                email=send_email,
                address=address,
                representative=representative,
                public_url=mailer.public_url,
                using_db=conn,
            )
    except IntegrityError:
        # A concurrent enrolment of the same NIR committed between the check and the insert.
        raise Conflict(ALREADY_ENROLLED) from None
    await deliver_now(message.id, mailer)
    return patient


async def deliver_now(message_id: UUID, mailer: Mailer) -> None:
    """Try at once after the commit; a failure leaves the message queued for the jobs."""
    try:
        await deliver(message_id, mailer)
    except Exception:
        logger.exception("immediate delivery failed; the outbox job will retry")


async def _active_adult(patient_id: UUID, today: date) -> Patient:
    patient = await Patient.get_or_none(id=patient_id)
    if patient is None or patient.status is not SpaceStatus.ACTIVE:
        raise Invalid("The representative must hold an active space.", field="representative_id")
    if is_minor(patient.birth_date, today):
        raise Invalid("The representative must be an adult.", field="representative_id")
    return patient


async def _account_email(patient_id: UUID) -> str | None:
    emails = await Account.filter(patient_id=patient_id).values_list("email", flat=True)
    return str(emails[0]) if emails else None


async def reissue_code(
    patient_id: UUID,
    *,
    channel: Channel | None,
    vault: Vault,
    mailer: Mailer,
    now: datetime | None = None,
    email: str | None = None,
    postal_address: PostalAddress | None = None,
) -> Patient:
    """A new code; a contact given here (e.g. for an automatically created space or a new
    adult without one) becomes the person's own contact."""
    now = now or utcnow()
    patient = await Patient.get_or_none(id=patient_id)
    if patient is None or patient.status is SpaceStatus.OPPOSED:
        raise NotFound()
    new_email = normalize_email(email) if email else None
    new_address = _check_address(postal_address) if postal_address else None
    if new_email or new_address:
        if new_email:
            patient.contact_email = new_email
        if new_address:
            patient.postal_address = asdict(new_address)
        await patient.save(update_fields=["contact_email", "postal_address"])
    last = await ActivationCode.filter(patient_id=patient.id).order_by("-sent_at").first()
    channel = channel or (last.channel if last else Channel.EMAIL)
    email = patient.contact_email
    address = PostalAddress(**patient.postal_address) if patient.postal_address else None
    today = paris_today(now)
    representative: Patient | None = None
    if is_minor(patient.birth_date, today):
        # As at enrolment, a minor's code goes to a representative (one with an e-mail
        # address, for that channel).
        email = None
        links = await Representation.filter(dependent_id=patient.id).prefetch_related(
            "representative"
        )
        for link in sorted(links, key=lambda link: link.created_at):
            rep_email = await _account_email(link.representative.id)
            if representative is None or (email is None and rep_email is not None):
                representative, email = link.representative, rep_email
    async with in_transaction() as conn:
        message = await _send_code(
            patient,
            channel=channel,
            vault=vault,
            now=now,
            email=email,
            address=address,
            representative=representative,
            public_url=mailer.public_url,
            using_db=conn,
        )
    await deliver_now(message.id, mailer)
    return patient


@dataclass(frozen=True)
class CodeProof:
    code: str
    nir: str
    birth_date: date


async def _check_code(
    proof: CodeProof, *, vault: Vault, actor: Actor, now: datetime
) -> tuple[Patient, ActivationCode, ratelimit.Reservation]:
    """Check code + NIR + birth date; every failure answers alike and counts against the NIR.

    The attempt is reserved against the NIR before the code is looked up, so of concurrent
    guesses at most MAX_CODE_FAILURES are evaluated; a failure keeps it (it counts), and the
    caller releases or clears it once the attempt succeeds.
    """
    try:
        nir = normalize_nir(proof.nir)
    except Invalid:
        nir = "".join(proof.nir.split()).upper()
    key = "nir:" + nir_key(vault, nir)
    attempt = await ratelimit.reserve(
        [ratelimit.Limit(key, MAX_CODE_FAILURES)],
        now=now,
        message="Too many failed attempts: ask for a new code.",
        locked_retry_after=LOCK_RETRY_AFTER,
    )
    patient = await Patient.get_or_none(nir_hash=nir_key(vault, nir))
    code = None
    if patient is not None and patient.birth_date == proof.birth_date:
        code = await ActivationCode.filter(
            patient_id=patient.id,
            superseded_at=None,
            used_at=None,
            expires_at__gt=now,
            code_hash=code_hash(vault, normalize_code(proof.code)),
        ).first()
    if patient is None or code is None or patient.status is SpaceStatus.OPPOSED:
        raise Invalid(GENERIC_CODE_ERROR)
    if is_minor(patient.birth_date, paris_today(now)):
        # A minor's space is activated or opposed by a logged-in legal representative.
        related = await relations(actor, [patient.id], paris_today(now))
        if not related[patient.id].representative:
            raise Invalid(GENERIC_CODE_ERROR)
    return patient, code, attempt


async def activate_space(
    proof: CodeProof,
    *,
    email: str | None,
    password: str | None,
    actor: Actor,
    vault: Vault,
    now: datetime | None = None,
) -> Patient:
    now = now or utcnow()
    clean_email = normalize_email(email) if email else None
    patient, code, attempt = await _check_code(proof, vault=vault, actor=actor, now=now)
    # The right code: whatever follows (credentials refused, a lost race), not a failed guess.
    await attempt.release()
    minor = is_minor(patient.birth_date, paris_today(now))
    account = await Account.get_or_none(patient_id=patient.id)
    password_hash: str | None = None
    # An adult's first activation, or credentials set after an automatic creation.
    wants_credentials = (
        account is None or account.password_hash is None or bool(clean_email) or bool(password)
    )
    if not minor and wants_credentials:
        if clean_email is None:
            raise Invalid("An e-mail address is required.", field="email")
        if not password:
            raise Invalid("A password is required.", field="password")
        check_password(password, email=clean_email, names=[patient.first_name, patient.last_name])
        # Not `.exclude(patient_id=…)`: in SQL that also drops the accounts of professionals
        # and operators (patient_id NULL), and the insert would then fail on the unique key.
        holder = await Account.filter(email=clean_email).values_list("patient_id", flat=True)
        if any(owner != patient.id for owner in holder):
            raise Invalid(EMAIL_TAKEN, field="email")
        password_hash = await hash_password(password)
    try:
        async with in_transaction() as conn:
            # Conditional: of two concurrent activations with one code, one gets through.
            used = (
                await ActivationCode.filter(id=code.id, used_at=None, superseded_at=None)
                .using_db(conn)
                .update(used_at=now)
            )
            if used != 1:
                raise Invalid(GENERIC_CODE_ERROR)
            reopening = patient.status is SpaceStatus.CLOSED
            patient.status = SpaceStatus.ACTIVE
            patient.activated_at = patient.activated_at if reopening else now
            patient.closed_at = None
            patient.archived_until = None
            patient.delete_by = None
            await patient.save(
                using_db=conn,
                update_fields=[
                    "status",
                    "activated_at",
                    "closed_at",
                    "archived_until",
                    "delete_by",
                ],
            )
            if password_hash is not None and clean_email is not None:
                if account is None:
                    await Account.create(
                        email=clean_email,
                        password_hash=password_hash,
                        role=Role.PATIENT,
                        patient_id=patient.id,
                        using_db=conn,
                    )
                else:
                    account.email = clean_email
                    account.password_hash = password_hash
                    await account.save(using_db=conn, update_fields=["email", "password_hash"])
                    # New credentials: whoever held the old ones is logged out with them.
                    await (
                        Session.filter(account_id=account.id, revoked_at=None)
                        .using_db(conn)
                        .update(revoked_at=now)
                    )
            await ratelimit.clear("nir:" + patient.nir_hash, using_db=conn)
    except IntegrityError:
        # Another account took the e-mail between the check above and this write.
        raise Invalid(EMAIL_TAKEN, field="email") from None
    return patient


async def oppose_space(
    proof: CodeProof,
    *,
    actor: Actor,
    vault: Vault,
    mailer: Mailer,
    blobs: BlobStore,
    now: datetime | None = None,
) -> bool:
    now = now or utcnow()
    # A success clears the NIR's counter with the rest; a failure keeps the attempt.
    patient, _, _ = await _check_code(proof, vault=vault, actor=actor, now=now)
    erased: list[str] = []
    digests: set[str] = set()
    async with in_transaction() as conn:
        # Nothing of theirs is kept but the proof of opposition: the keyed NIR hash and when.
        # A representative may have written to a minor's pending space: all of it goes.
        # Conditional, so an activation that won the race is never overwritten.
        opposed = (
            await Patient.filter(id=patient.id, status=SpaceStatus.PENDING)
            .using_db(conn)
            .update(
                status=SpaceStatus.OPPOSED,
                opposed_at=now,
                nir_encrypted=None,
                first_name="",
                last_name="",
                contact_email=None,
                postal_address=None,
                treating_doctor_id=None,
                emergency_access_opposed=False,
                rules_checked_on=None,
            )
        )
        if opposed == 1:
            # Codes, links, account, dossier, log, agenda, messages, feed: every row.
            digests = await erasure.erase_space_rows(patient.id, using_db=conn)
            await ratelimit.clear("nir:" + patient.nir_hash, using_db=conn)
            erased = await outbox.erase_for(patient.id, using_db=conn)
    # Committed: the files of the erased rows can go.
    await outbox.remove_files(mailer, erased)
    await erasure.release_blobs(blobs, digests)
    if opposed != 1:
        # Once created, a space is closed, not opposed (the attempt stays counted).
        raise Invalid(GENERIC_CODE_ERROR)
    return True


async def _confirm_password(
    account_id: UUID | None, password: str, *, client: str, vault: Vault, now: datetime
) -> None:
    """The caller re-enters their own password (a representative, theirs): limited as their
    logins are, and on the same counters (RATE_LIMITED past them)."""
    if not await confirm_password(account_id, password, client=client, vault=vault, now=now):
        raise Invalid("The password is incorrect.", field="password")


async def close_space(
    patient_id: UUID,
    *,
    account_id: UUID | None,
    password: str,
    client: str,
    vault: Vault,
    now: datetime | None = None,
) -> Patient:
    now = now or utcnow()
    # The state first: a space that cannot be closed answers alike for any password.
    if not await Patient.exists(id=patient_id, status=SpaceStatus.ACTIVE):
        raise Conflict(ONLY_ACTIVE_CLOSES)
    await _confirm_password(account_id, password, client=client, vault=vault, now=now)
    async with in_transaction() as conn:
        # Conditional, so two concurrent requests cannot both close (and archive) the space.
        closed = (
            await Patient.filter(id=patient_id, status=SpaceStatus.ACTIVE)
            .using_db(conn)
            .update(
                status=SpaceStatus.CLOSED,
                closed_at=now,
                archived_until=now + relativedelta(years=ARCHIVE_YEARS),
            )
        )
        if closed != 1:
            raise Conflict(ONLY_ACTIVE_CLOSES)
        patient = await Patient.get(id=patient_id, using_db=conn)
        accounts = (
            await Account.filter(patient_id=patient.id).using_db(conn).values_list("id", flat=True)
        )
        await (
            Session.filter(account_id__in=list(accounts), revoked_at=None)
            .using_db(conn)
            .update(revoked_at=now)
        )
        # Partner apps' grants end with it (a reopened space grants afresh).
        await catalogue.end_grants_of_space(patient.id, now=now, using_db=conn)
    return patient


async def request_deletion(
    patient_id: UUID,
    *,
    account_id: UUID | None,
    password: str,
    client: str,
    vault: Vault,
    now: datetime | None = None,
) -> datetime:
    now = now or utcnow()
    # The state first: an active space answers alike for any password.
    patient = await Patient.get(id=patient_id)
    if patient.status is not SpaceStatus.CLOSED:
        raise Conflict("Deletion can be requested for a closed space only.")
    await _confirm_password(account_id, password, client=client, vault=vault, now=now)
    # Conditional: a deadline already set stays, and a space reopened meanwhile is not marked.
    await Patient.filter(id=patient_id, status=SpaceStatus.CLOSED, delete_by=None).update(
        delete_by=now + relativedelta(months=DELETION_DELAY_MONTHS)
    )
    patient = await Patient.get(id=patient_id)
    if patient.status is not SpaceStatus.CLOSED or patient.delete_by is None:
        raise Conflict("Deletion can be requested for a closed space only.")
    return patient.delete_by


# --- jobs -------------------------------------------------------------------------------


async def create_spaces_due(now: datetime) -> int:
    """Spaces whose code went out 42 days ago without opposition are created (idempotent)."""
    cutoff = now - timedelta(days=CODE_VALIDITY_DAYS)
    due = await ActivationCode.filter(
        superseded_at=None, used_at=None, sent_at__lte=cutoff, patient__status=SpaceStatus.PENDING
    ).values_list("patient_id", flat=True)
    if not due:
        return 0
    return await Patient.filter(id__in=list(due), status=SpaceStatus.PENDING).update(
        status=SpaceStatus.ACTIVE, activated_at=now
    )


async def purge_closed(now: datetime, *, blobs: BlobStore, mailer: Mailer) -> int:
    """Archives past 10 years, and deletion requests past their deadline, are deleted: the
    rows (the database cascades from the patient row) and the messages about the space,
    then, once committed, their bytes and files."""
    due = Q(status=SpaceStatus.CLOSED) & (Q(archived_until__lte=now) | Q(delete_by__lte=now))
    ids = [UUID(str(i)) for i in await Patient.filter(due).values_list("id", flat=True)]
    purged = 0
    for patient_id in ids:
        erased: list[str] = []
        async with in_transaction() as conn:
            digests = await erasure.space_blobs(patient_id, using_db=conn)
            # Conditional: another machine's purge, or a reopening, may have come first.
            # (What a DELETE reports on SQLite includes the rows its cascades removed.)
            deleted = await Patient.filter(due, id=patient_id).using_db(conn).delete()
            if deleted:
                erased = await outbox.erase_for(patient_id, using_db=conn)
        if deleted:
            purged += 1
            await outbox.remove_files(mailer, erased)
            await erasure.release_blobs(blobs, digests)
    return purged


async def end_majority_links(*, vault: Vault, mailer: Mailer, now: datetime) -> int:
    """On the 18th birthday the representation links end and a code goes to the new adult."""
    cutoff = minor_cutoff(paris_today(now))
    adults = await Patient.filter(
        representative_links__id__isnull=False, birth_date__lte=cutoff
    ).distinct()
    ended = 0
    for patient in adults:
        # The code goes to the new adult's own contact, never to a former representative:
        # with it, they could activate the space and choose its credentials.
        address = PostalAddress(**patient.postal_address) if patient.postal_address else None
        channel = Channel.EMAIL if patient.contact_email else Channel.POST if address else None
        message: OutboxMessage | None = None
        async with in_transaction() as conn:
            deleted = await Representation.filter(dependent_id=patient.id).using_db(conn).delete()
            ended += deleted
            if deleted and channel is not None:
                message = await _send_code(
                    patient,
                    channel=channel,
                    vault=vault,
                    now=now,
                    email=patient.contact_email,
                    address=address,
                    representative=None,
                    public_url=mailer.public_url,
                    using_db=conn,
                )
            elif deleted:
                # A code a representative still holds must not open the adult's space.
                await (
                    ActivationCode.filter(patient_id=patient.id, superseded_at=None)
                    .using_db(conn)
                    .update(superseded_at=now)
                )
        if message is not None:
            await deliver_now(message.id, mailer)
        elif deleted:
            logger.warning(
                "representation of %s ended at 18; no contact of their own: an operator "
                "re-issues the code when they come forward",
                patient.id,
            )
    return ended
