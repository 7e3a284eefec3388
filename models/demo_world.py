"""The demo world: a year of care of one family, told in the order it happened.

The Durand-Petit family (all fictitious): Camille Durand, her husband Thomas and their son
Léo (10, asthmatic), and Camille's father Jean Petit (68, hypertensive). Their médecin
traitant, Dr Claire Martin, follows all four; an emergency physician opened Jean's dossier
one night; a physiotherapist's consent has expired; an occupational doctor is blocked. The
hospital (Hôpital des Tilleuls) has a shared inbox answered by two members, its admission
nurse Émilie Garnier and Dr Benali, through which it prepares Jean's admission.

Every step goes through the domain functions, at the moment it happened (`now` minus some
days): consents, documents (with real PDF, PNG, JPEG, TIFF, RTF and text bytes from
`models.demo_files`), the carnet de vaccination, screenings, conversations and their read
receipts, appointments and their reminders, emergency access and its alert, and the access
events each read or write leaves. Between two steps the reminders that fell due are raised
and ended appointments marked done, as the jobs would have done (and the family dismisses
the reminders of the appointments they went to); at the end the reminder rules run for
today. So the world obeys the same rules as one built through the API, and stays fresh:
appointments are ahead, reminders are due.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from tortoise.transactions import in_transaction

from models import demo_files as files
from models.access import Actor, Relation, relations
from models.account import Account, Role
from models.appointment import (
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    Slot,
    cancel_appointment,
    create_appointment,
    mark_done,
)
from models.audit import AccessAction, AccessBasis, AuditTrail
from models.base import PARIS, paris_today
from models.blobs import BlobStore
from models.catalogue import (
    AppGrant,
    AppScope,
    AuthorizationCode,
    IssuedTokens,
    NewApp,
    NewCode,
    exchange_code,
    issue_code,
    new_access_token,
    new_code,
    new_refresh_token,
    register_app,
)
from models.consent import (
    ConsentAccess,
    block_professional,
    grant_consent,
    open_emergency_access,
    revoke_consent,
    set_treating_doctor,
)
from models.crypto import Vault
from models.demo import DEMO_PASSWORD
from models.demo import _patient as demo_patient
from models.document import (
    Document,
    DocumentCategory,
    NewDocument,
    add_document,
    read_basis,
    set_hidden,
)
from models.errors import Conflict
from models.establishment import add_member, register_establishment
from models.message import (
    Attachment,
    Conversation,
    ConversationPurpose,
    Message,
    Upload,
    close_conversation,
    mark_read,
    save_attachment,
    send_message,
    start_conversation,
)
from models.patient import Representation, Sex, SpaceStatus
from models.persisted import parse_manifest
from models.professional import Profession, Registration, Sector
from models.professional import register_professional as register
from models.record import (
    ScreeningKind,
    VaccineCode,
    record_screening,
    record_vaccination,
    update_health_profile,
)
from models.reminder import (
    Reminder,
    ReminderStatus,
    compute_rule_reminders,
    dismiss,
    raise_due,
    raise_now,
)

DOMAIN = "demo.espace-sante.localhost"
MARTIN = f"dr.martin@{DOMAIN}"
BENALI = f"dr.benali@{DOMAIN}"
LAMBERT = f"s.lambert@{DOMAIN}"
MOREAU = f"dr.moreau@{DOMAIN}"
GARNIER = f"e.garnier@{DOMAIN}"
CAMILLE = f"camille@{DOMAIN}"
THOMAS = f"thomas@{DOMAIN}"
JEAN = f"jean@{DOMAIN}"
# Created in the world's transaction: its presence means the whole world is there.
MARKER = BENALI
# The appointment platform of the catalogue (a public client: PKCE alone), granted by Jean.
PLATFORM_CLIENT_ID = "rdv-lilas-demo"
PLATFORM_REDIRECT = "http://127.0.0.1:8765/callback"
# Its persisted documents, registered on its list under these ids (a Relay-style map: each
# id is an alias of the document's SHA-256 for this client), so that a request may name
# one `{"documentId": "Agenda"}`.
PLATFORM_DOCUMENTS = {
    "Patient": (
        "query Patient { viewer { ... on PartnerApp { name actingFor "
        "{ id firstName lastName birthDate } } } }"
    ),
    "Agenda": (
        "query Agenda($from: DateTime) { viewer { ... on PartnerApp { actingFor "
        "{ appointments(first: 20, from: $from) { totalCount edges { node "
        "{ id title startsAt endsAt location status source } } } } } } }"
    ),
    "Book": (
        "mutation Book($input: CreateAppointmentInput!) { createAppointment(input: $input) "
        "{ appointment { id title startsAt endsAt location status source } } }"
    ),
    "Move": (
        "mutation Move($input: UpdateAppointmentInput!) { updateAppointment(input: $input) "
        "{ appointment { id title startsAt endsAt status } } }"
    ),
    "Cancel": (
        "mutation Cancel($input: CancelAppointmentInput!) { cancelAppointment(input: $input) "
        "{ appointment { id status cancelledReason } } }"
    ),
}

MAX_BYTES = 20 * 1024 * 1024
CABINET = "Cabinet médical des Lilas, 12 rue des Lilas, 75019 Paris"
KINE = "Cabinet de kinésithérapie, 8 avenue Simon-Bolivar, 75019 Paris"
HOSPITAL = "Hôpital des Tilleuls (fictif)"
HOSPITAL_FINESS = "750109993"
MARTIN_SIGNATURE = ["Dr Claire Martin — Médecin généraliste", CABINET, "RPPS 10003456789", ""]


async def load_world(
    *,
    vault: Vault,
    blobs: BlobStore,
    now: datetime,
    reminder_hours: tuple[int, ...] = (48, 2),
) -> bool:
    """Tell the story once, in one transaction; False when it is already there.

    Builds on the people that `models.demo.seed_demo` creates first (the operator, Dr
    Martin, Camille, Léo and Jean).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if await Account.exists(email=MARKER):
        return False
    async with in_transaction():
        story = _Story(vault=vault, blobs=blobs, now=now.astimezone(UTC), hours=reminder_hours)
        await story.cast()
        await story.tell()
    return True


# --- the cast ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    actor: Actor
    id: UUID  # the patient's or the professional's id


def _patient_actor(account: Account) -> Actor:
    assert account.patient_id is not None
    return Actor(
        role=Role.PATIENT,
        account_id=account.id,
        patient_id=account.patient_id,
        patient_status=SpaceStatus.ACTIVE,
    )


def _professional_actor(account: Account) -> Actor:
    assert account.professional_id is not None
    return Actor(
        role=Role.PROFESSIONAL, account_id=account.id, professional_id=account.professional_id
    )


async def _account(email: str) -> Account:
    account = await Account.get_or_none(email=email)
    if account is None:
        raise Conflict(f"The demo account {email} is missing: load the demo into a fresh database.")
    return account


# --- the story --------------------------------------------------------------------------


class _Story:
    def __init__(
        self, *, vault: Vault, blobs: BlobStore, now: datetime, hours: tuple[int, ...]
    ) -> None:
        self.vault = vault
        self.blobs = blobs
        self.now = now
        self.hours = hours
        self.today = paris_today(now)
        self.clock = now - timedelta(days=400)  # the story's own clock, only moving forward

    # -- time --

    def day(self, days_ago: int) -> date:
        return self.today - timedelta(days=days_ago)

    def at(self, days_ago: int, hour: int, minute: int = 0) -> datetime:
        """Paris wall time on the day `days_ago` days before today (negative: ahead)."""
        local = datetime.combine(self.day(days_ago), time(hour, minute), tzinfo=PARIS)
        return local.astimezone(UTC)

    async def advance(self, moment: datetime) -> datetime:
        """Move the story to `moment`: raise the reminders that fell due meanwhile, each at its
        own moment, and mark ended appointments done, as the jobs would have."""
        if moment < self.clock:
            raise AssertionError(f"the story goes back in time: {moment} < {self.clock}")
        if moment > self.now:
            raise AssertionError(f"the story tells the future: {moment}")
        due = sorted(
            {
                row
                for row in await Reminder.filter(
                    status=ReminderStatus.PENDING, due_at__lte=moment
                ).values_list("due_at", flat=True)
            }
        )
        for instant in due:
            await raise_due(instant)  # type: ignore[arg-type]
        await mark_done(moment)
        # The family dismisses the reminders of the appointments they went to.
        for reminder in await Reminder.filter(
            status=ReminderStatus.SENT,
            appointment__status=AppointmentStatus.DONE,
            appointment__ends_at__lte=moment,
        ):
            await dismiss(reminder, now=moment)
        self.clock = moment
        return moment

    # -- people --

    async def cast(self) -> None:
        self.martin = await self._professional_person(MARTIN)
        self.camille = await self._patient_person(CAMILLE)
        self.jean = await self._patient_person(JEAN)
        link = await Representation.get_or_none(representative_id=self.camille.id)
        if link is None:
            raise Conflict("The demo's minor is missing: load the demo into a fresh database.")
        self.leo = link.dependent_id
        thomas = await demo_patient(
            self.vault, "Thomas", "Durand", date(1982, 11, 7), Sex.MALE, "654", THOMAS
        )
        await Representation.create(representative_id=thomas.id, dependent_id=self.leo)
        self.thomas = await self._patient_person(THOMAS)
        self.lambert = await self._professional(
            "10004567891", "Sophie", "Lambert", Profession.MASSEUR_KINESITHERAPEUTE, LAMBERT
        )
        self.moreau = await self._professional(
            "10005678912", "Hugo", "Moreau", Profession.MEDECIN, MOREAU
        )
        # The hospital's admission nurse, who declared it at registration (its FINESS).
        self.garnier = await self._professional(
            "10007891234",
            "Émilie",
            "Garnier",
            Profession.INFIRMIER,
            GARNIER,
            finess=HOSPITAL_FINESS,
        )
        self.platform = await self._platform()
        # The MARKER: committed with the rest of the world, or not at all.
        self.benali = await self._professional(
            "10006789123", "Karim", "Benali", Profession.MEDECIN, BENALI
        )

    async def _platform(self) -> _Person:
        """The pharmacy's appointment platform, in the catalogue with its documents, and the
        grant Jean gave it (through a code exchanged for tokens, as an app gets one)."""
        scopes = [AppScope.IDENTITY_READ, AppScope.APPOINTMENTS_READ, AppScope.APPOINTMENTS_WRITE]
        registered = await register_app(
            NewApp(
                name="RDV Pharmacie des Lilas (fictif)",
                description=(
                    "Prise de rendez-vous en ligne avec la Pharmacie des Lilas : vaccinations, "
                    "entretiens pharmaceutiques. Les rendez-vous pris arrivent dans l'agenda."
                ),
                homepage="https://rdv-lilas.example",
                redirect_uris=[PLATFORM_REDIRECT],
                scopes=scopes,
                confidential=False,
            ),
            documents=parse_manifest(json.dumps(PLATFORM_DOCUMENTS)),
            registered_by="seed-demo",
            vault=self.vault,
            client_id=PLATFORM_CLIENT_ID,
        )
        app = registered.app
        moment = self.at(6, 21, 0)  # the evening Jean's pharmacist told him about it
        code = new_code()
        verifier = secrets.token_urlsafe(48)  # the app's, kept by the app
        challenge = hashlib.sha256(verifier.encode()).digest()
        await issue_code(
            code,
            NewCode(
                app_id=app.id,
                patient_id=self.jean.id,
                granted_by_id=self.jean.id,
                redirect_uri=PLATFORM_REDIRECT,
                scopes=[scope.value for scope in scopes],
                code_challenge=base64.urlsafe_b64encode(challenge).rstrip(b"=").decode(),
                code_challenge_method="S256",
            ),
            vault=self.vault,
            now=moment,
        )
        row = await AuthorizationCode.get(app_id=app.id)
        tokens = IssuedTokens(new_access_token(), new_refresh_token(), row.scopes)
        grant = await exchange_code(row.id, tokens, vault=self.vault, now=moment)
        await _backdate(AppGrant, grant.id, moment)
        actor = Actor(
            app_id=app.id,
            app_client=app.client_id,
            grant_id=grant.id,
            acting_for=self.jean.id,
            scopes=frozenset(scopes),
        )
        return _Person(actor, app.id)

    async def _patient_person(self, email: str) -> _Person:
        actor = _patient_actor(await _account(email))
        assert actor.patient_id is not None
        return _Person(actor, actor.patient_id)

    async def _professional(
        self,
        rpps: str,
        first: str,
        last: str,
        profession: Profession,
        email: str,
        *,
        finess: str | None = None,
    ) -> _Person:
        await register(
            Registration(
                rpps=rpps,
                first_name=first,
                last_name=last,
                profession=profession,
                sector=Sector.HEALTH,
                email=email,
                password=DEMO_PASSWORD,
                finess=finess,
            )
        )
        return await self._professional_person(email)

    async def _professional_person(self, email: str) -> _Person:
        actor = _professional_actor(await _account(email))
        assert actor.professional_id is not None
        return _Person(actor, actor.professional_id)

    # -- what people do --

    async def relation(self, actor: Actor, patient_id: UUID, moment: datetime) -> Relation:
        return (await relations(actor, [patient_id], paris_today(moment), moment))[patient_id]

    def trail(self, actor: Actor, moment: datetime) -> AuditTrail:
        """One request's access events."""
        return AuditTrail(uuid.uuid4().hex, actor.id, actor.audit_role, moment)

    async def read(
        self,
        who: _Person,
        patient_id: UUID,
        moment: datetime,
        *,
        downloads: tuple[Document, ...] = (),
    ) -> None:
        """Open the dossier (one event), then download some documents (one event each)."""
        await self.advance(moment)
        relation = await self.relation(who.actor, patient_id, moment)
        if not relation.reads_dossier or relation.audit_basis is None:
            raise AssertionError(f"{who} may not read {patient_id} at {moment}")
        trail = self.trail(who.actor, moment)
        await trail.record(
            patient_id=patient_id, action=AccessAction.READ, basis=relation.audit_basis
        )
        for document in downloads:
            download = self.trail(who.actor, moment + timedelta(seconds=30))
            basis = read_basis(relation)
            assert basis is not None
            await download.record(
                patient_id=patient_id,
                action=AccessAction.DOWNLOAD,
                basis=basis,
                document_id=document.id,
            )

    async def deposit(
        self,
        who: _Person,
        patient_id: UUID,
        moment: datetime,
        title: str,
        category: DocumentCategory,
        data: bytes,
    ) -> Document:
        await self.advance(moment)
        relation = await self.relation(who.actor, patient_id, moment)
        trail = self.trail(who.actor, moment)

        async def audit(document_id: UUID) -> None:
            if relation.audit_basis is not None:  # the holder's own writes are not events
                await trail.record(
                    patient_id=patient_id,
                    action=AccessAction.WRITE,
                    basis=relation.audit_basis,
                    document_id=document_id,
                )

        document = await add_document(
            NewDocument(title, category, data, None, paris_today(moment)),
            patient_id=patient_id,
            actor=who.actor,
            relation=relation,
            blobs=self.blobs,
            max_bytes=MAX_BYTES,
            today=paris_today(moment),
            audit=audit,
        )
        await _backdate(Document, document.id, moment)
        return document

    async def start(
        self,
        who: _Person,
        patient_id: UUID,
        moment: datetime,
        subject: str,
        body: str,
        attachments: list[Upload] | None = None,
        *,
        establishment: UUID | None = None,
        purpose: ConversationPurpose = ConversationPurpose.CARE,
    ) -> tuple[Conversation, Message]:
        await self.advance(moment)
        conversation, message = await start_conversation(
            patient_id,
            actor=who.actor,
            subject=subject,
            body=body,
            attachments=attachments or [],
            blobs=self.blobs,
            max_bytes=MAX_BYTES,
            now=moment,
            establishment_id=establishment,
            purpose=purpose,
        )
        await _backdate(Conversation, conversation.id, moment)
        await mark_read(conversation, actor=who.actor, now=moment)  # one's own message
        return conversation, message

    async def send(
        self,
        who: _Person,
        conversation: Conversation,
        moment: datetime,
        body: str,
        attachments: list[Upload] | None = None,
    ) -> Message:
        """Post, having read the conversation first (replying means having read it)."""
        await self.advance(moment)
        relation = None
        if who.actor.is_patient:
            relation = await self.relation(who.actor, conversation.patient_id, moment)
        await mark_read(conversation, actor=who.actor, now=moment)
        return await send_message(
            conversation,
            actor=who.actor,
            relation=relation,
            body=body,
            attachments=attachments or [],
            blobs=self.blobs,
            max_bytes=MAX_BYTES,
            now=moment,
        )

    async def seen(self, who: _Person, conversation: Conversation, moment: datetime) -> None:
        await self.advance(moment)
        await mark_read(conversation, actor=who.actor, now=moment)

    async def save(
        self,
        who: _Person,
        message: Message,
        moment: datetime,
        titles: dict[str, tuple[str, DocumentCategory]],
    ) -> list[Document]:
        """The patient saves a message's attachments (by file name) into the dossier."""
        await self.advance(moment)
        conversation = await Conversation.get(id=message.conversation_id)
        relation = await self.relation(who.actor, conversation.patient_id, moment)
        attachments = {row.filename: row for row in await Attachment.filter(message_id=message.id)}
        saved = []
        for filename, (title, category) in titles.items():
            attachment = attachments[filename]
            async with in_transaction():
                document = await save_attachment(
                    attachment,
                    patient_id=conversation.patient_id,
                    actor=who.actor,
                    title=title,
                    category=category,
                    today=paris_today(moment),
                )
                if relation.audit_basis is not None:  # a representative saving for a minor
                    await self.trail(who.actor, moment).record(
                        patient_id=conversation.patient_id,
                        action=AccessAction.WRITE,
                        basis=relation.audit_basis,
                        document_id=document.id,
                    )
            await _backdate(Document, document.id, moment)
            saved.append(document)
        return saved

    @asynccontextmanager
    async def logged(
        self, who: _Person | None, patient_id: UUID, moment: datetime
    ) -> AsyncIterator[None]:
        """A write and its access event (by anyone but the holder), together or not at all,
        as `resolvers.audit.logged_write` makes them; `who` None: a platform, no one."""
        async with in_transaction():
            yield
            if who is not None:
                relation = await self.relation(who.actor, patient_id, moment)
                if relation.audit_basis is not None:
                    await self.trail(who.actor, moment).record(
                        patient_id=patient_id,
                        action=AccessAction.WRITE,
                        basis=relation.audit_basis,
                    )

    def patient_side(self, patient_id: UUID) -> _Person:
        """Who acts for this patient: the holder, or Léo's mother."""
        if patient_id == self.leo:
            return self.camille
        return {p.id: p for p in (self.camille, self.thomas, self.jean)}[patient_id]

    async def book(
        self,
        patient_id: UUID,
        moment: datetime,
        *,
        starts: datetime,
        minutes: int,
        title: str,
        location: str | None,
        professional: _Person | None,
        source: AppointmentSource,
    ) -> Appointment:
        """Booked by the professional, the patient's side or a platform, as `source` says."""
        await self.advance(moment)
        by = {
            AppointmentSource.PROFESSIONAL: professional,
            AppointmentSource.PATIENT: self.patient_side(patient_id),
            AppointmentSource.PLATFORM: None,
        }[source]
        async with self.logged(by, patient_id, moment):
            return await create_appointment(
                patient_id,
                Slot(starts, starts + timedelta(minutes=minutes), title, location),
                professional_id=professional.id if professional else None,
                source=source,
                hours=self.hours,
                now=moment,
            )

    # -- the year, in order --

    async def tell(self) -> None:
        await self.opening()
        await self.choosing_a_doctor()
        await self.knee_and_check_up()
        await self.night_at_the_emergency_department()
        await self.asthma_and_blood_test()
        await self.last_weeks()
        await self.jobs_of_today()

    async def opening(self) -> None:
        """The family fills in their new spaces with the records they had on paper: the
        carnets de vaccination, the last screenings, allergies, treatments. Camille enters
        Léo's (each write by a representative is an access event of his space)."""
        martin, camille, jean, thomas, leo = (
            self.martin,
            self.camille,
            self.jean,
            self.thomas,
            self.leo,
        )
        moment = await self.advance(self.at(370, 20, 30))
        records = [
            (leo, VaccineCode.HEPATITIS_B, date(2016, 11, 3), 1, "HB1612A", None),
            (leo, VaccineCode.HEPATITIS_B, date(2017, 1, 5), 2, "HB1701C", None),
            (leo, VaccineCode.MMR, date(2017, 9, 5), 1, "ROR0917", None),
            (leo, VaccineCode.HEPATITIS_B, date(2017, 9, 5), 3, "HB1709B", None),
            (leo, VaccineCode.MMR, date(2018, 1, 10), 2, "ROR0118", None),
            (leo, VaccineCode.DTCAP, date(2022, 9, 20), None, "X4521", martin),
            (camille.id, VaccineCode.DTCAP, date(2009, 6, 10), None, "DT0906", None),
            (camille.id, VaccineCode.COVID19, date(2021, 6, 15), 1, "FF2381", None),
            (camille.id, VaccineCode.COVID19, date(2021, 7, 20), 2, "FF3127", None),
            (thomas.id, VaccineCode.DTCAP, date(2008, 1, 15), None, "DT0801", None),
            (thomas.id, VaccineCode.COVID19, date(2021, 6, 2), 1, "FF2207", None),
            (jean.id, VaccineCode.COVID19, date(2021, 4, 2), 1, "EW0172", None),
            (jean.id, VaccineCode.COVID19, date(2021, 5, 7), 2, "EW0199", None),
            (jean.id, VaccineCode.DTP, date(2023, 3, 14), None, "RV2303", martin),
        ]
        # Last season's flu shot (this season's is due: the rules say so from 15 October).
        season = self.today.year - 1 if self.today.month >= 9 else self.today.year - 2
        records.append(
            (jean.id, VaccineCode.INFLUENZA, date(season, 10, 21), None, f"FLU{season}", martin)
        )
        for n, (patient_id, vaccine, day, dose, lot, given_by) in enumerate(records):
            entered = moment + timedelta(minutes=n)
            async with self.logged(self.patient_side(patient_id), patient_id, entered):
                await record_vaccination(
                    patient_id,
                    vaccine=vaccine,
                    day=day,
                    dose_number=dose,
                    lot_number=lot,
                    professional_id=given_by.id if given_by else None,
                    today=paris_today(entered),
                )
        moment = await self.advance(self.at(370, 21, 0))
        await record_screening(
            camille.id,
            kind=ScreeningKind.CERVICAL_HPV,
            day=self.day(730),
            result="Test HPV à haut risque négatif.",
            today=paris_today(moment),
        )
        await update_health_profile(
            camille.id,
            {
                "allergies": ["Pollens de graminées (rhinite au printemps)"],
                "treatments": ["Cétirizine 10 mg au printemps, à la demande"],
                "trusted_person": {
                    "name": "Thomas Durand",
                    "phone": "06 39 98 56 78",
                    "relationship": "conjoint",
                },
            },
        )
        await update_health_profile(
            jean.id,
            {
                "allergies": ["Pénicilline (urticaire)"],
                "treatments": [
                    "Ramipril 5 mg : 1 comprimé le matin",
                    "Atorvastatine 20 mg : 1 comprimé le soir",
                ],
                "history": [
                    "Hypertension artérielle (depuis 2015)",
                    "Hypercholestérolémie",
                    "Appendicectomie (1975)",
                ],
                "advance_directives": (
                    "En cas de maladie grave sans espoir de guérison, je refuse l'acharnement "
                    "thérapeutique et je souhaite être soulagé de la douleur. "
                    "Ma fille Camille connaît mes volontés."
                ),
                "trusted_person": {
                    "name": "Camille Durand",
                    "phone": "06 39 98 12 34",
                    "relationship": "fille",
                },
            },
        )

    async def choosing_a_doctor(self) -> None:
        """The family chooses Dr Martin and shares their dossiers with her; Thomas's back."""
        martin, camille, thomas, jean, leo = (
            self.martin,
            self.camille,
            self.thomas,
            self.jean,
            self.leo,
        )
        for patient_id in (camille.id, leo):
            moment = await self.advance(self.at(362, 19, 5 if patient_id == camille.id else 8))
            async with self.logged(camille, patient_id, moment):
                await set_treating_doctor(patient_id, martin.id)
            moment = await self.advance(moment + timedelta(minutes=1))
            async with self.logged(camille, patient_id, moment):
                await grant_consent(
                    patient_id, martin.id, ConsentAccess.READ_WRITE, expires_at=None, now=moment
                )
        moment = await self.advance(self.at(350, 10, 40))
        await set_treating_doctor(jean.id, martin.id)
        await grant_consent(
            jean.id, martin.id, ConsentAccess.READ_WRITE, expires_at=None, now=moment
        )
        await self.read(martin, jean.id, self.at(350, 11, 2))

        # The occupational doctor of Camille's employer, for her hiring visit.
        moment = await self.advance(self.at(331, 8, 50))
        self.moreau_consent = await grant_consent(
            camille.id, self.moreau.id, ConsentAccess.READ, expires_at=None, now=moment
        )
        await self.read(self.moreau, camille.id, self.at(331, 9, 20))

        # Thomas's lower back pain: a consultation, a sick note by message, then closed.
        moment = await self.advance(self.at(306, 21, 15))
        await grant_consent(thomas.id, martin.id, ConsentAccess.READ, expires_at=None, now=moment)
        await self.book(
            thomas.id,
            self.at(306, 21, 16),
            starts=self.at(302, 9, 0),
            minutes=20,
            title="Consultation — douleurs lombaires",
            location=CABINET,
            professional=martin,
            source=AppointmentSource.PATIENT,
        )
        await self.read(martin, thomas.id, self.at(302, 9, 5))
        sick_note = files.pdf(
            "Avis d'arrêt de travail",
            [
                *MARTIN_SIGNATURE,
                "Patient : Thomas Durand, né le 07/11/1982",
                "",
                f"Arrêt de travail du {self.day(302):%d/%m/%Y} au {self.day(296):%d/%m/%Y} inclus.",
                "Motif médical : lombalgie aiguë.",
                "Sorties autorisées sans restriction d'horaire.",
                "",
                "Volet 3, à adresser à l'employeur.",
            ],
            author="Dr Claire Martin",
            date=f"{self.day(302):%Y%m%d}",
        )
        conversation, _ = await self.start(
            martin,
            thomas.id,
            self.at(302, 9, 40),
            "Arrêt de travail",
            "Bonjour M. Durand, voici votre avis d'arrêt de travail pour votre employeur. "
            "Reposez-vous, et reprenez la marche progressivement.",
            [Upload("avis-arret-de-travail.pdf", sick_note, "application/pdf")],
        )
        await self.send(thomas, conversation, self.at(302, 12, 3), "Bien reçu, merci docteur !")
        await self.seen(martin, conversation, self.at(301, 8, 15))
        moment = await self.advance(self.at(299, 12, 0))  # Jean posts his screening kit back
        await record_screening(
            jean.id,
            kind=ScreeningKind.COLORECTAL,
            day=self.day(300),
            result="Test immunologique fécal négatif. Prochain test dans 2 ans.",
            today=paris_today(moment),
        )
        await self.advance(self.at(296, 18, 0))
        await close_conversation(conversation, actor=martin.actor, now=self.clock)
        cancelled = await self.book(
            thomas.id,
            self.at(280, 20, 30),
            starts=self.at(270, 18, 0),
            minutes=20,
            title="Consultation de suivi — lombalgie",
            location=CABINET,
            professional=martin,
            source=AppointmentSource.PATIENT,
        )
        await self.advance(self.at(272, 7, 45))
        await cancel_appointment(cancelled, reason="Empêchement professionnel.", now=self.clock)

    async def knee_and_check_up(self) -> None:
        """Camille's knee: a prescription, a physiotherapist with a consent that expires;
        Jean's yearly check-up; Camille stops sharing with the occupational doctor."""
        martin, camille, jean, lambert = self.martin, self.camille, self.jean, self.lambert
        await self.book(
            camille.id,
            self.at(242, 18, 30),
            starts=self.at(241, 17, 30),
            minutes=20,
            title="Consultation — genou droit",
            location=CABINET,
            professional=martin,
            source=AppointmentSource.PATIENT,
        )
        await self.read(martin, camille.id, self.at(241, 17, 35))
        prescription = await self.deposit(
            martin,
            camille.id,
            self.at(241, 17, 50),
            "Ordonnance de kinésithérapie — genou droit",
            DocumentCategory.PRESCRIPTION,
            files.pdf(
                "Ordonnance",
                [
                    *MARTIN_SIGNATURE,
                    f"Paris, le {self.day(241):%d/%m/%Y}",
                    "Mme Camille Durand, née le 12/05/1984",
                    "",
                    "# Kinésithérapie",
                    "10 séances de rééducation du genou droit (entorse bénigne du ligament "
                    "latéral interne), à domicile ou au cabinet.",
                    "Renforcement musculaire du quadriceps, travail proprioceptif.",
                    "",
                    "# Traitement",
                    "Paracétamol 1 g : 1 comprimé jusqu'à 3 fois par jour si douleur.",
                    "Glaçage 15 minutes, 3 fois par jour pendant 5 jours.",
                ],
                author="Dr Claire Martin",
                date=f"{self.day(241):%Y%m%d}",
            ),
        )
        await self.advance(self.at(240, 9, 0))
        await update_health_profile(
            camille.id,
            {
                "history": [f"Entorse du genou droit ({self.day(241):%m/%Y}), rééducation"],
                "measurements": {
                    "height_cm": 165,
                    "weight_kg": 61,
                    "systolic_mmhg": 118,
                    "diastolic_mmhg": 74,
                    "measured_on": self.day(241).isoformat(),
                },
            },
        )
        moment = await self.advance(self.at(239, 12, 10))
        await grant_consent(
            camille.id,
            lambert.id,
            ConsentAccess.READ,
            expires_at=self.at(150, 23, 59),
            now=moment,
        )
        await self.read(lambert, camille.id, self.at(239, 14, 0), downloads=(prescription,))
        for days_ago in (236, 232, 229):
            await self.book(
                camille.id,
                self.at(239, 14, 5),
                starts=self.at(days_ago, 18, 0),
                minutes=30,
                title="Séance de kinésithérapie — genou droit",
                location=KINE,
                professional=lambert,
                source=AppointmentSource.PROFESSIONAL,
            )
        await self.read(lambert, camille.id, self.at(229, 18, 40))

        # Camille changed jobs: she revokes the occupational doctor's consent, then blocks him.
        moment = await self.advance(self.at(205, 21, 40))
        await revoke_consent(self.moreau_consent, now=moment)
        await block_professional(camille.id, self.moreau.id)
        # Jean's check-up: the treatment renewed, a resting ECG.
        await self.book(
            jean.id,
            self.at(200, 11, 0),
            starts=self.at(180, 10, 0),
            minutes=30,
            title="Consultation — suivi de l'hypertension",
            location=CABINET,
            professional=martin,
            source=AppointmentSource.PROFESSIONAL,
        )
        await self.read(martin, jean.id, self.at(180, 10, 5))
        self.jean_prescription = await self.deposit(
            martin,
            jean.id,
            self.at(180, 10, 25),
            "Ordonnance — traitement de l'hypertension",
            DocumentCategory.PRESCRIPTION,
            files.pdf(
                "Ordonnance",
                [
                    *MARTIN_SIGNATURE,
                    f"Paris, le {self.day(180):%d/%m/%Y}",
                    "M. Jean Petit, né le 20/02/1958",
                    "",
                    "# Traitement de fond",
                    "Ramipril 5 mg : 1 comprimé le matin.",
                    "Atorvastatine 20 mg : 1 comprimé le soir.",
                    "Traitement pour 3 mois, à renouveler 1 fois.",
                    "",
                    "# Surveillance",
                    "Automesure tensionnelle : 3 mesures le matin et 3 le soir, 3 jours de suite, "
                    "avant la prochaine consultation.",
                    "Bilan sanguin à jeun dans 4 mois : créatinine, kaliémie, bilan lipidique.",
                ],
                author="Dr Claire Martin",
                date=f"{self.day(180):%Y%m%d}",
            ),
        )
        await self.deposit(
            martin,
            jean.id,
            self.at(180, 10, 27),
            "ECG de repos",
            DocumentCategory.IMAGING,
            files.png(
                files.ecg_picture(
                    f"ECG DE REPOS - JEAN PETIT - {self.day(180):%d/%m/%Y} - RYTHME SINUSAL 68/MIN",
                    beats_per_minute=68,
                )
            ),
        )

        # A note she keeps to herself (hidden from professionals but her médecin traitant).
        note = await self.deposit(
            camille,
            camille.id,
            self.at(160, 20, 15),
            "Compte rendu — consultation de psychologie",
            DocumentCategory.REPORT,
            files.pdf(
                "Compte rendu de consultation",
                [
                    "Inès Garnier — Psychologue clinicienne (fictive)",
                    f"Paris, le {self.day(160):%d/%m/%Y}",
                    "",
                    "Mme Camille Durand consulte pour un épuisement lié à un changement de "
                    "poste. Trois entretiens ont eu lieu. Sommeil amélioré, pas de signe de "
                    "gravité. Suivi proposé si besoin.",
                ],
                author="Inès Garnier",
                date=f"{self.day(160):%Y%m%d}",
            ),
        )
        await set_hidden(note, True)

    async def night_at_the_emergency_department(self) -> None:
        """Jean at the emergency department one night: identified by his NIR, his dossier
        opened without consent (bris de glace) and Jean alerted at once; the next day a
        liaison letter and the X-ray come by message, and Jean saves them into his dossier."""
        jean, benali, martin = self.jean, self.benali, self.martin
        moment = await self.advance(self.at(131, 23, 38))
        lookup = await self.relation(benali.actor, jean.id, moment)
        await self.trail(benali.actor, moment).record(
            patient_id=jean.id,
            action=AccessAction.LOOKUP,
            basis=lookup.dossier_basis or AccessBasis.LOOKUP,
        )
        moment = await self.advance(self.at(131, 23, 41))
        access = await open_emergency_access(
            jean.id,
            benali.id,
            reason=(
                "Douleur thoracique aiguë aux urgences, patient confus : besoin des "
                "antécédents, des traitements et des allergies."
            ),
            now=moment,
        )
        relation = await self.relation(benali.actor, jean.id, moment)
        await self.trail(benali.actor, moment).record(
            patient_id=jean.id,
            action=AccessAction.EMERGENCY_OPEN,
            basis=AccessBasis.EMERGENCY,
        )
        assert relation.dossier_basis is AccessBasis.EMERGENCY
        await raise_now(jean.id, f"EMERGENCY_ACCESS:{access.id}", now=moment)
        await self.read(benali, jean.id, self.at(131, 23, 43), downloads=(self.jean_prescription,))
        await self.read(benali, jean.id, self.at(130, 3, 10))

        letter = files.rtf(
            f"Lettre de liaison — urgences, {HOSPITAL}",
            [
                f"Paris, le {self.day(130):%d/%m/%Y}",
                "Dr Karim Benali, médecin urgentiste, à l'attention du Dr Claire Martin.",
                "",
                "Chère consœur,",
                f"J'ai reçu votre patient M. Jean Petit, 68 ans, la nuit du {self.day(131):%d/%m}, "
                "pour une douleur thoracique gauche apparue au repos, avec confusion passagère.",
                "ECG : rythme sinusal, pas de trouble de la repolarisation. Troponine "
                "négative à H0 et H3. Radiographie du thorax : pas d'anomalie.",
                "Pression artérielle à l'arrivée : 168/95 mmHg, normalisée sous repos.",
                "Conclusion : douleur thoracique non cardiaque, probablement pariétale, sur "
                "poussée hypertensive. Retour à domicile.",
                "Je vous propose de le revoir sous huit jours pour réévaluer son traitement "
                "antihypertenseur.",
                "",
                "Bien confraternellement,",
                "Dr Karim Benali",
            ],
        )
        xray = files.jpeg(files.chest_xray_picture(f"THORAX DE FACE - {self.day(131):%d/%m/%Y}"))
        conversation, message = await self.start(
            benali,
            jean.id,
            self.at(130, 10, 20),
            "Votre passage aux urgences",
            "Bonjour M. Petit, vous trouverez ci-joint la lettre de liaison pour votre médecin "
            "traitant et votre radiographie. Prenez rendez-vous avec le Dr Martin sous huit jours.",
            [
                Upload("lettre-de-liaison-urgences.rtf", letter, "application/rtf"),
                Upload("radiographie-thorax.jpg", xray, "image/jpeg"),
            ],
        )
        await self.save(
            jean,
            message,
            self.at(129, 9, 30),
            {
                "lettre-de-liaison-urgences.rtf": (
                    "Lettre de liaison — urgences de l'Hôpital des Tilleuls",
                    DocumentCategory.REPORT,
                ),
                "radiographie-thorax.jpg": (
                    "Radiographie du thorax (urgences)",
                    DocumentCategory.IMAGING,
                ),
            },
        )
        await self.send(
            jean,
            conversation,
            self.at(129, 9, 34),
            "Merci docteur, et merci à toute l'équipe de nuit. J'ai pris rendez-vous avec le "
            "Dr Martin.",
        )
        await self.book(
            jean.id,
            self.at(129, 9, 40),
            starts=self.at(124, 11, 30),
            minutes=30,
            title="Consultation après passage aux urgences",
            location=CABINET,
            professional=martin,
            source=AppointmentSource.PATIENT,
        )
        await self.seen(benali, conversation, self.at(128, 14, 0))
        await self.advance(self.at(128, 14, 1))
        await close_conversation(conversation, actor=benali.actor, now=self.clock)
        letter_document = await Document.get(patient_id=jean.id, mime_type="application/rtf")
        await self.read(martin, jean.id, self.at(124, 11, 35), downloads=(letter_document,))

    async def asthma_and_blood_test(self) -> None:
        """Léo's asthma: a consultation, a prescription, an action plan, his growth chart,
        a certificate for football, and the carnet de santé photographed by his mother."""
        martin, camille, thomas, leo = self.martin, self.camille, self.thomas, self.leo
        await self.book(
            leo,
            self.at(97, 20, 10),
            starts=self.at(95, 17, 0),
            minutes=20,
            title="Consultation — toux et sifflements",
            location=CABINET,
            professional=martin,
            source=AppointmentSource.PATIENT,
        )
        await self.read(martin, leo, self.at(95, 17, 4))
        signature = [
            *MARTIN_SIGNATURE,
            f"Paris, le {self.day(95):%d/%m/%Y}",
            "Léo Durand, né le 03/09/2016, 32 kg",
            "",
        ]
        await self.deposit(
            martin,
            leo,
            self.at(95, 17, 20),
            "Ordonnance — asthme",
            DocumentCategory.PRESCRIPTION,
            files.pdf(
                "Ordonnance",
                [
                    *signature,
                    "Salbutamol 100 µg/dose, suspension pour inhalation : 2 bouffées en cas de "
                    "gêne respiratoire, à renouveler si besoin (4 fois par jour au plus).",
                    "Chambre d'inhalation avec embout buccal : 1.",
                    "Béclométasone 100 µg/dose : 1 bouffée matin et soir pendant 3 mois.",
                ],
                author="Dr Claire Martin",
                date=f"{self.day(95):%Y%m%d}",
            ),
        )
        await self.deposit(
            martin,
            leo,
            self.at(95, 17, 22),
            "Plan d'action en cas de crise d'asthme",
            DocumentCategory.TREATMENT,
            files.pdf(
                "Plan d'action — crise d'asthme",
                [
                    *signature,
                    "# Signes d'alerte",
                    "Toux, sifflements, essoufflement, difficulté à parler ou à jouer.",
                    "# Que faire",
                    "1. Installer Léo assis, au calme.",
                    "2. Salbutamol : 2 bouffées avec la chambre d'inhalation, à répéter après "
                    "20 minutes si la gêne persiste (3 fois au plus).",
                    "3. Sans amélioration, ou si Léo a du mal à parler : appeler le 15.",
                    "# Au quotidien",
                    "Traitement de fond matin et soir, même sans symptôme. Housse anti-acariens.",
                ],
                author="Dr Claire Martin",
                date=f"{self.day(95):%Y%m%d}",
            ),
        )
        await self.deposit(
            martin,
            leo,
            self.at(95, 17, 24),
            "Courbe de croissance",
            DocumentCategory.OTHER,
            files.png(
                files.growth_chart_picture(
                    "Léo Durand - taille (cm) selon l'âge (ans)",
                    [0, 1, 2, 4, 6, 8, 10],
                    [50, 75, 87, 103, 117, 129, 139],
                )
            ),
        )
        certificate = files.pdf(
            "Certificat médical de non contre-indication",
            [
                *signature,
                "Je soussignée, Dr Claire Martin, certifie avoir examiné Léo Durand et n'avoir "
                "constaté aucune contre-indication à la pratique du football, y compris en "
                "compétition.",
                "Asthme léger contrôlé : garder le salbutamol dans le sac de sport.",
                "",
                "Certificat remis en main propre pour valoir ce que de droit.",
            ],
            author="Dr Claire Martin",
            date=f"{self.day(95):%Y%m%d}",
        )
        self.leo_conversation, message = await self.start(
            martin,
            leo,
            self.at(94, 8, 45),
            "Certificat de sport de Léo",
            "Bonjour, voici le certificat pour le club de football de Léo. Pouvez-vous "
            "m'envoyer une photo de la page des vaccinations de son carnet de santé ?",
            [Upload("certificat-football-leo.pdf", certificate, "application/pdf")],
        )
        await self.save(
            camille,
            message,
            self.at(94, 12, 30),
            {
                "certificat-football-leo.pdf": (
                    "Certificat de non contre-indication au football",
                    DocumentCategory.ADMINISTRATIVE,
                )
            },
        )
        photo = files.jpeg(
            files.paper_picture(
                "Carnet de santé - Vaccinations",
                [
                    "Hépatite B  1  03/11/2016  HB1612A",
                    "Hépatite B  2  05/01/2017  HB1701C",
                    "ROR  1  05/09/2017  ROR0917",
                    "Hépatite B  3  05/09/2017  HB1709B",
                    "ROR  2  10/01/2018  ROR0118",
                    "DTCaP rappel 6 ans  20/09/2022  X4521",
                ],
                photo=True,
            ),
            quality=80,
        )
        reply = await self.send(
            camille,
            self.leo_conversation,
            self.at(94, 12, 34),
            "Merci docteur ! Voici la page du carnet.",
            [Upload("carnet-vaccinations-leo.jpg", photo, "image/jpeg")],
        )
        await self.save(
            camille,
            reply,
            self.at(94, 12, 36),
            {
                "carnet-vaccinations-leo.jpg": (
                    "Carnet de santé — page des vaccinations",
                    DocumentCategory.VACCINATION,
                )
            },
        )
        moment = await self.advance(self.at(94, 12, 45))
        async with self.logged(camille, leo, moment):
            await update_health_profile(
                leo,
                {
                    "allergies": ["Acariens"],
                    "treatments": [
                        "Salbutamol (Ventoline) 100 µg : 2 bouffées en cas de gêne respiratoire",
                        "Béclométasone 100 µg : 1 bouffée matin et soir",
                    ],
                    "history": [f"Asthme léger, diagnostiqué en {self.day(95):%m/%Y}"],
                    "measurements": {
                        "height_cm": 139,
                        "weight_kg": 32,
                        "measured_on": self.day(95).isoformat(),
                    },
                    "trusted_person": {
                        "name": "Camille et Thomas Durand",
                        "phone": "06 39 98 12 34",
                        "relationship": "parents",
                    },
                },
            )
        await self.send(
            martin,
            self.leo_conversation,
            self.at(93, 18, 50),
            "Merci. Ses vaccins sont à jour ; le prochain rappel (DTCaP) est prévu à 11 ans.",
        )
        await self.seen(camille, self.leo_conversation, self.at(93, 19, 30))
        await self.read(thomas, leo, self.at(93, 21, 5))
        await self.book(
            leo,
            self.at(90, 9, 15),
            starts=self.at(-21, 14, 30),
            minutes=45,
            title="Consultation de pneumo-pédiatrie — bilan d'asthme",
            location=f"{HOSPITAL}, service de pédiatrie",
            professional=None,
            source=AppointmentSource.PATIENT,
        )

        # Jean's blood test, the results by message, saved into his dossier.
        await self.book(
            jean_id := self.jean.id,
            self.at(70, 18, 0),
            starts=self.at(60, 7, 45),
            minutes=15,
            title="Prise de sang à jeun",
            location="Laboratoire Bio-Lilas, 30 rue des Lilas, 75019 Paris",
            professional=None,
            source=AppointmentSource.PATIENT,
        )
        results = files.pdf(
            "Compte rendu d'analyses de biologie médicale",
            [
                "Laboratoire Bio-Lilas (fictif) — 30 rue des Lilas, 75019 Paris",
                f"Prélèvement du {self.day(60):%d/%m/%Y} à 07:50, à jeun",
                "Patient : M. Jean Petit, né le 20/02/1958",
                "Prescripteur : Dr Claire Martin",
                "",
                "# Biochimie",
                "Créatinine : 92 µmol/L (59 à 104) — DFG estimé (CKD-EPI) : 74 mL/min/1,73 m²",
                "Potassium : 4,4 mmol/L (3,5 à 5,1)",
                "Sodium : 139 mmol/L (136 à 145)",
                "Glycémie à jeun : 5,6 mmol/L (4,1 à 5,9)",
                "# Bilan lipidique",
                "Cholestérol total : 4,9 mmol/L",
                "HDL-cholestérol : 1,3 mmol/L (> 1,0)",
                "LDL-cholestérol (calculé) : 2,7 mmol/L — objectif < 2,6 mmol/L",
                "Triglycérides : 1,9 mmol/L (< 1,7) — légèrement élevés",
                "",
                "Compte rendu validé par le biologiste responsable.",
            ],
            author="Laboratoire Bio-Lilas",
            date=f"{self.day(58):%Y%m%d}",
        )
        self.jean_conversation, message = await self.start(
            self.martin,
            jean_id,
            self.at(58, 13, 10),
            "Résultats de votre bilan sanguin",
            "Bonjour M. Petit, vos résultats sont bons : reins et potassium normaux sous "
            "ramipril. Le LDL est presque à l'objectif ; continuons l'atorvastatine et les "
            "efforts sur l'alimentation.",
            [Upload("bilan-sanguin.pdf", results, "application/pdf")],
        )
        await self.seen(self.jean, self.jean_conversation, self.at(57, 8, 2))
        await self.save(
            self.jean,
            message,
            self.at(57, 8, 5),
            {
                "bilan-sanguin.pdf": (
                    f"Bilan sanguin du {self.day(60):%d/%m/%Y}",
                    DocumentCategory.LAB_RESULT,
                )
            },
        )
        await self.send(
            self.jean,
            self.jean_conversation,
            self.at(57, 8, 11),
            "Merci docteur. Faut-il changer quelque chose à mon traitement ?",
        )
        await self.send(
            self.martin,
            self.jean_conversation,
            self.at(56, 12, 40),
            "Non, on garde le même traitement. Faites vos relevés de tension avant notre "
            "prochain rendez-vous.",
        )
        await self.seen(self.jean, self.jean_conversation, self.at(56, 19, 0))

    async def last_weeks(self) -> None:
        """Jean's paperwork and blood pressure log; an echography report for Camille that she
        has not opened; Léo's cough; a dentist; and messages waiting for Dr Martin."""
        martin, camille, jean = self.martin, self.camille, self.jean
        await self.deposit(
            jean,
            jean.id,
            self.at(40, 16, 20),
            "Attestation de droits — Assurance Maladie",
            DocumentCategory.ADMINISTRATIVE,
            files.tiff(
                files.paper_picture(
                    "Attestation de droits",
                    [
                        "Assurance Maladie (document fictif)",
                        "Beneficiaire : Jean Petit",
                        "Ne le : 20/02/1958",
                        "Regime general - Caisse de Paris",
                        f"Droits ouverts du {self.day(40):%d/%m/%Y} au 31/12/{self.today.year + 1}",
                        "Medecin traitant declare : Dr Claire Martin",
                    ],
                )
            ),
        )
        await self.book(
            camille.id,
            self.at(30, 13, 0),
            starts=self.at(-9, 18, 15),
            minutes=30,
            title="Dentiste — détartrage",
            location="Cabinet dentaire, 4 place des Fêtes, 75019 Paris",
            professional=None,
            source=AppointmentSource.PATIENT,
        )
        await self.book(
            jean.id,
            self.at(20, 11, 0),
            starts=self.at(-1, 10, 30),
            minutes=30,
            title="Consultation — renouvellement d'ordonnance",
            location=CABINET,
            professional=martin,
            source=AppointmentSource.PROFESSIONAL,
        )
        await self.admission_at_the_hospital()
        readings = [
            "Relevés de tension artérielle — automesure (Jean Petit)",
            "Tensiomètre au bras gauche, assis, après 5 minutes de repos.",
            "",
            "date        moment  systolique/diastolique (mmHg)  pouls",
        ]
        for days_ago, morning, evening in (
            (8, ("142/88", 66), ("138/85", 70)),
            (7, ("146/90", 68), ("135/84", 72)),
            (6, ("151/92", 71), ("139/86", 69)),
        ):
            day = f"{self.day(days_ago):%d/%m/%Y}"
            readings.append(f"{day}  matin   {morning[0]:<31} {morning[1]}")
            readings.append(f"{day}  soir    {evening[0]:<31} {evening[1]}")
        readings += ["", "Moyenne : 142/88 mmHg."]
        await self.deposit(
            jean,
            jean.id,
            self.at(6, 20, 45),
            "Relevés de tension — automesure",
            DocumentCategory.OTHER,
            files.text(readings),
        )
        await self.advance(self.at(6, 20, 50))
        await update_health_profile(
            jean.id,
            {
                "history": [
                    "Hypertension artérielle (depuis 2015)",
                    "Hypercholestérolémie",
                    "Appendicectomie (1975)",
                    f"Douleur thoracique non cardiaque, urgences ({self.day(131):%m/%Y})",
                ],
                "measurements": {
                    "height_cm": 176,
                    "weight_kg": 84,
                    "systolic_mmhg": 142,
                    "diastolic_mmhg": 88,
                    "measured_on": self.day(6).isoformat(),
                },
            },
        )
        await self.book(
            jean.id,
            self.at(5, 15, 30),
            starts=self.at(-12, 11, 0),
            minutes=15,
            title="Vaccination contre le zona",
            location="Pharmacie des Lilas, 20 rue des Lilas, 75019 Paris",
            professional=None,
            source=AppointmentSource.PLATFORM,
        )
        await self.read(martin, camille.id, self.at(4, 12, 30))
        echography = files.pdf(
            "Compte rendu d'échographie thyroïdienne",
            [
                "Centre d'imagerie des Buttes (fictif) — Dr Lucie Fabre, radiologue",
                f"Examen du {self.day(5):%d/%m/%Y} — Mme Camille Durand, née le 12/05/1984",
                "Indication : bilan d'une fatigue, TSH à 4,8 mUI/L.",
                "",
                "Thyroïde de taille normale, échostructure homogène.",
                "Lobe droit : nodule de 6 mm, kystique, à contours nets (EU-TIRADS 2).",
                "Pas d'adénopathie cervicale.",
                "",
                "Conclusion : petit nodule bénin. Pas de ponction. Contrôle de la TSH dans 6 mois.",
            ],
            author="Dr Lucie Fabre",
            date=f"{self.day(4):%Y%m%d}",
        )
        await self.start(
            martin,
            camille.id,
            self.at(3, 18, 5),
            "Résultat de votre échographie thyroïdienne",
            "Bonjour Mme Durand, le compte rendu de votre échographie est rassurant : le "
            "nodule est bénin. Nous contrôlerons la TSH dans six mois. Bonne soirée.",
            [Upload("compte-rendu-echographie-thyroide.pdf", echography, "application/pdf")],
        )
        await self.send(
            camille,
            self.leo_conversation,
            self.at(2, 7, 55),
            "Bonjour docteur, Léo tousse beaucoup la nuit depuis trois jours malgré la "
            "Ventoline. Faut-il avancer son rendez-vous de pneumo-pédiatrie ?",
        )
        await self.read(self.thomas, self.leo, self.at(2, 21, 15))
        await self.send(
            jean,
            self.jean_conversation,
            self.at(1, 8, 20),
            "Bonjour docteur, ce matin ma tension était à 151/92. Est-ce inquiétant avant "
            "notre rendez-vous de demain ?",
        )

    async def admission_at_the_hospital(self) -> None:
        """The Hôpital des Tilleuls opens its shared inbox (an operator registers it and
        attaches its admission nurse and Dr Benali), and prepares Jean's cataract surgery:
        the admission nurse asks for the anaesthesia questionnaire, Jean sends it back, she
        reads and downloads it (access events naming her and the hospital) and confirms.
        Dr Benali, the other member, has not read Jean's message yet."""
        jean, garnier, benali = self.jean, self.garnier, self.benali
        moment = await self.advance(self.at(16, 9, 0))
        hospital = await register_establishment(HOSPITAL_FINESS, HOSPITAL)
        for member in (garnier, benali):
            await add_member(hospital.id, member.id, now=moment)
        surgery = self.day(-18)
        questionnaire = files.pdf(
            "Questionnaire pré-anesthésique",
            [
                f"{HOSPITAL} — Service de chirurgie ambulatoire",
                f"Patient : M. Jean Petit, né le 20/02/1958 — intervention du {surgery:%d/%m/%Y}",
                "Chirurgie de la cataracte, œil droit, sous anesthésie locale.",
                "",
                "1. Allergies connues : ......................................",
                "2. Traitements en cours : ...................................",
                "3. Antécédents médicaux et chirurgicaux : ...................",
                "4. Personne à prévenir : .....................................",
            ],
            author=HOSPITAL,
            date=f"{self.day(14):%Y%m%d}",
        )
        conversation, _ = await self.start(
            garnier,
            jean.id,
            self.at(14, 9, 30),
            f"Votre admission du {surgery:%d/%m/%Y} — chirurgie ambulatoire",
            "Bonjour M. Petit, pour préparer votre admission en chirurgie ambulatoire, merci "
            "de nous renvoyer le questionnaire pré-anesthésique ci-joint, rempli. Émilie "
            "Garnier, infirmière du bureau des admissions.",
            [Upload("questionnaire-pre-anesthesique.pdf", questionnaire, "application/pdf")],
            establishment=hospital.id,
            purpose=ConversationPurpose.ADMISSION,
        )
        answers = files.pdf(
            "Questionnaire pré-anesthésique — rempli",
            [
                f"Patient : M. Jean Petit — intervention du {surgery:%d/%m/%Y}",
                "1. Allergies connues : pénicilline (urticaire).",
                "2. Traitements en cours : ramipril 5 mg le matin, atorvastatine 20 mg le soir.",
                "3. Antécédents : hypertension artérielle, hypercholestérolémie, "
                "appendicectomie (1975).",
                "4. Personne à prévenir : Camille Durand (fille), 06 39 98 12 34.",
            ],
            author="Jean Petit",
            date=f"{self.day(13):%Y%m%d}",
        )
        await self.send(
            jean,
            conversation,
            self.at(13, 18, 40),
            "Bonjour, voici le questionnaire rempli. Ma fille m'accompagnera le jour de "
            "l'intervention.",
            [Upload("questionnaire-rempli-jean-petit.pdf", answers, "application/pdf")],
        )
        # The admission nurse reads Jean's message and opens the questionnaire: two events.
        moment = await self.advance(self.at(12, 8, 50))
        trail = self.trail(garnier.actor, moment)
        await trail.record(
            patient_id=jean.id,
            action=AccessAction.READ,
            basis=AccessBasis.CONVERSATION,
            establishment_id=hospital.id,
        )
        download = self.trail(garnier.actor, moment + timedelta(seconds=40))
        await download.record(
            patient_id=jean.id,
            action=AccessAction.DOWNLOAD,
            basis=AccessBasis.CONVERSATION,
            establishment_id=hospital.id,
        )
        await self.send(
            garnier,
            conversation,
            self.at(12, 9, 5),
            "Merci M. Petit, votre dossier d'admission est complet. Présentez-vous à 7 h 30 "
            "au service de chirurgie ambulatoire, à jeun depuis minuit.",
        )

    async def jobs_of_today(self) -> None:
        """The jobs of today: the reminder rules (vaccinations, screenings) and what fell
        due (the 48-hour reminder of Jean's appointment of tomorrow)."""
        await self.advance(self.now)
        await compute_rule_reminders(self.now)
        await self.advance(self.now)


async def _backdate(model: Any, pk: UUID, moment: datetime) -> None:
    """A row made by the story carries the moment it happened, not the moment of the seed."""
    await model.filter(id=pk).update(created_at=moment)
