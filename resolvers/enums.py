"""GraphQL enums, mapped from the domain enums so the values stay in one place."""

from __future__ import annotations

import strawberry

from models.account import Role as _Role
from models.appointment import AppointmentSource as _AppointmentSource
from models.appointment import AppointmentStatus as _AppointmentStatus
from models.audit import AccessAction as _AccessAction
from models.audit import AccessBasis as _AccessBasis
from models.audit import ActorRole as _ActorRole
from models.consent import ConsentAccess as _ConsentAccess
from models.document import DocumentCategory as _DocumentCategory
from models.lifecycle import Channel as _Channel
from models.message import ConversationPurpose as _ConversationPurpose
from models.patient import Sex as _Sex
from models.patient import SpaceStatus as _SpaceStatus
from models.professional import Profession as _Profession
from models.professional import Sector as _Sector
from models.record import ScreeningKind as _ScreeningKind
from models.record import VaccineCode as _VaccineCode
from models.reminder import ReminderKind as _ReminderKind
from models.reminder import ReminderStatus as _ReminderStatus

Sex = strawberry.enum(_Sex, name="Sex", description="A person's sex, as on their NIR.")
SpaceStatus = strawberry.enum(
    _SpaceStatus, name="SpaceStatus", description="The lifecycle state of a space."
)
EnrollmentChannel = strawberry.enum(
    _Channel, name="EnrollmentChannel", description="How an activation code is sent."
)
Sector = strawberry.enum(
    _Sector, name="Sector", description="The sector a professional practises in."
)
Profession = strawberry.enum(
    _Profession, name="Profession", description="A professional's profession."
)
Role = strawberry.enum(_Role, name="Role", description="The kind of account.")

DocumentCategory = strawberry.enum(
    _DocumentCategory, name="DocumentCategory", description="What kind of document it is."
)
VaccineCode = strawberry.enum(
    _VaccineCode, name="VaccineCode", description="A vaccine of the carnet de vaccination."
)
ScreeningKind = strawberry.enum(
    _ScreeningKind, name="ScreeningKind", description="A screening test of the national programmes."
)
ConsentAccess = strawberry.enum(
    _ConsentAccess,
    name="ConsentAccess",
    description="What a consent lets a professional do with the dossier.",
)
AccessAction = strawberry.enum(
    _AccessAction, name="AccessAction", description="What an access to the dossier did."
)
AccessBasis = strawberry.enum(
    _AccessBasis, name="AccessBasis", description="By what right someone accessed the dossier."
)
ActorRole = strawberry.enum(
    _ActorRole, name="ActorRole", description="In which role someone accessed the dossier."
)
ReminderKind = strawberry.enum(
    _ReminderKind, name="ReminderKind", description="What a reminder is about."
)
ReminderStatus = strawberry.enum(
    _ReminderStatus, name="ReminderStatus", description="Where a reminder stands."
)
AppointmentStatus = strawberry.enum(
    _AppointmentStatus, name="AppointmentStatus", description="Where an appointment stands."
)
AppointmentSource = strawberry.enum(
    _AppointmentSource, name="AppointmentSource", description="Who booked an appointment."
)
ConversationPurpose = strawberry.enum(
    _ConversationPurpose,
    name="ConversationPurpose",
    description="Why a conversation exists: care, or an establishment's admission, discharge "
    "or other paperwork.",
)


# --- what each value means, with the French label a client shows -------------------------
# Set on the definitions above: the values come from the domain enums (models/), which
# know nothing of GraphQL.

VALUE_DESCRIPTIONS: dict[object, dict[str, str]] = {
    Sex: {
        "FEMALE": "Féminin — female.",
        "MALE": "Masculin — male.",
    },
    SpaceStatus: {
        "PENDING": (
            "En attente — enrolled by an operator; the confidential code is sent and the "
            "holder may still activate or oppose (42 days, then the space is created)."
        ),
        "ACTIVE": "Actif — the space exists: activated by the holder, or after 42 days.",
        "OPPOSED": (
            "Opposé — the holder opposed its creation; nothing of theirs is kept but the proof "
            "of opposition."
        ),
        "CLOSED": (
            "Clôturé — closed by the holder: sessions revoked, data archived for 10 years "
            "(reopening restores it)."
        ),
    },
    EnrollmentChannel: {
        "EMAIL": "Courriel — the activation code is sent by e-mail.",
        "POST": "Courrier — the activation code is sent by post (printed from the outbox).",
    },
    Sector: {
        "HEALTH": "Sanitaire — the health sector (care).",
        "MEDICO_SOCIAL": "Médico-social — the medico-social sector (care homes, disability).",
        "SOCIAL": "Social — the social sector.",
    },
    Profession: {
        "MEDECIN": "Médecin — a physician.",
        "PHARMACIEN": "Pharmacien — a pharmacist.",
        "INFIRMIER": "Infirmier — a nurse.",
        "SAGE_FEMME": "Sage-femme — a midwife.",
        "CHIRURGIEN_DENTISTE": "Chirurgien-dentiste — a dentist.",
        "MASSEUR_KINESITHERAPEUTE": "Masseur-kinésithérapeute — a physiotherapist.",
        "PSYCHOLOGUE": "Psychologue — a psychologist.",
        "ASSISTANT_SERVICE_SOCIAL": "Assistant de service social — a social worker.",
        "EDUCATEUR_SPECIALISE": "Éducateur spécialisé — a specialised educator.",
        "OTHER": "Autre — another profession.",
    },
    Role: {
        "PATIENT": "Patient — the holder of a space.",
        "PROFESSIONAL": "Professionnel — a health or social professional.",
        "OPERATOR": "Opérateur — staff of the platform.",
    },
    DocumentCategory: {
        "PRESCRIPTION": "Ordonnance — a prescription.",
        "LAB_RESULT": "Résultat de biologie — a laboratory result.",
        "IMAGING": "Imagerie médicale — an imaging report or image.",
        "REPORT": (
            "Compte rendu — a hospital or consultation report, a liaison letter (lettre de "
            "liaison)."
        ),
        "TREATMENT": "Traitement — a treatment plan or its follow-up.",
        "VACCINATION": "Vaccination — a vaccination certificate or record.",
        "ADMINISTRATIVE": "Document administratif — an administrative document.",
        "OTHER": "Autre — any other document.",
    },
    VaccineCode: {
        "DTP": "DTP — diphtheria, tetanus, poliomyelitis.",
        "DTCAP": "dTcaP — diphtheria, tetanus, whooping cough (coqueluche), poliomyelitis.",
        "INFLUENZA": "Grippe — influenza.",
        "PNEUMOCOCCAL": "Pneumocoque — pneumococcal disease.",
        "ZOSTER": "Zona — shingles (herpes zoster).",
        "COVID19": "Covid-19 — COVID-19.",
        "HPV": "Papillomavirus (HPV) — human papillomavirus.",
        "MMR": "ROR — measles, mumps, rubella (rougeole, oreillons, rubéole).",
        "HEPATITIS_B": "Hépatite B — hepatitis B.",
        "OTHER": "Autre — another vaccine.",
    },
    ScreeningKind: {
        "BREAST": "Dépistage du cancer du sein — breast cancer screening (mammography).",
        "COLORECTAL": "Dépistage du cancer colorectal — colorectal cancer screening.",
        "CERVICAL_CYTOLOGY": (
            "Dépistage du cancer du col de l'utérus, examen cytologique — cervical screening "
            "by cytology (women aged 25 to 29)."
        ),
        "CERVICAL_HPV": (
            "Dépistage du cancer du col de l'utérus, test HPV — cervical screening by HPV test "
            "(women aged 30 to 65)."
        ),
    },
    ConsentAccess: {
        "READ": "Consultation — the professional reads the dossier.",
        "READ_WRITE": (
            "Consultation et alimentation — the professional reads the dossier and adds "
            "documents to it."
        ),
    },
    AccessAction: {
        "READ": "Consultation — the dossier (or a document's details) was read.",
        "WRITE": "Écriture — something was added to or changed in the dossier.",
        "DOWNLOAD": "Téléchargement — a document's bytes were downloaded.",
        "LOOKUP": "Recherche — the patient was found by NIR and birth date (`patientByNir`).",
        "EMERGENCY_OPEN": (
            "Accès en urgence — the dossier was opened in an emergency (bris de glace)."
        ),
        "EXPORT": (
            "Export — the whole space was exported (FHIR, `GET /export/{patientId}.fhir.json`)."
        ),
    },
    AccessBasis: {
        "CONSENT": "Consentement — under a consent the holder granted.",
        "TREATING_DOCTOR": "Médecin traitant — as the holder's designated treating doctor.",
        "EMERGENCY": "Urgence — under emergency access (bris de glace).",
        "REPRESENTATIVE": "Représentant légal — as a legal representative of the minor.",
        "AUTHOR": "Auteur — as the author of the document.",
        "CONVERSATION": (
            "Messagerie — as a party to a conversation with the patient (their identity only)."
        ),
        "OPERATOR": "Opérateur — as an operator of the platform.",
        "APP": "Application — a partner app, within the scopes the holder granted.",
        "LOOKUP": (
            "Recherche — no other basis: the professional identified the patient by NIR and "
            "birth date."
        ),
        "HOLDER": "Titulaire — the holder themself (only their own export is logged).",
    },
    ActorRole: {
        "PATIENT": "Patient — the holder or a legal representative.",
        "PROFESSIONAL": "Professionnel — a health or social professional.",
        "OPERATOR": "Opérateur — staff of the platform.",
        "PARTNER_APP": "Application partenaire — a partner app acting for the patient.",
    },
    ReminderKind: {
        "APPOINTMENT": "Rendez-vous — before an appointment (48 h and 2 h by default).",
        "SCREENING": "Dépistage — a screening that is due.",
        "VACCINATION": "Vaccination — a vaccine that is due.",
        "EMERGENCY_ACCESS": (
            "Accès en urgence — alert: a professional opened the dossier in an emergency."
        ),
    },
    ReminderStatus: {
        "PENDING": "À venir — not raised yet (its moment has not come).",
        "SENT": "Envoyé — raised: its moment came.",
        "DISMISSED": (
            "Écarté — dismissed by the patient, or dropped because its appointment was "
            "cancelled or changed before it was raised."
        ),
    },
    AppointmentStatus: {
        "SCHEDULED": "Prévu — to come.",
        "CANCELLED": "Annulé — cancelled (see `cancelledReason`).",
        "DONE": "Passé — over: it has ended.",
    },
    AppointmentSource: {
        "PATIENT": "Patient — created by the patient (or a representative).",
        "PROFESSIONAL": "Professionnel — created by a professional.",
        "PLATFORM": (
            "Plateforme de rendez-vous — synchronised by a partner app under APPOINTMENTS_WRITE."
        ),
    },
    ConversationPurpose: {
        "CARE": "Soins — about care (the default).",
        "ADMISSION": "Admission — an establishment preparing the patient's entry.",
        "DISCHARGE": "Sortie — an establishment preparing the patient's exit.",
        "ADMINISTRATIVE": "Administratif — other paperwork.",
    },
}


def describe_values(enum: object, descriptions: dict[str, str]) -> None:
    """Sets each value's description (a value left out stays undescribed: the schema's
    test, tests/test_descriptions.py, lists it)."""
    for value in enum.__strawberry_definition__.values:  # type: ignore[attr-defined]
        value.description = descriptions.get(value.name, value.description)


for _enum, _descriptions in VALUE_DESCRIPTIONS.items():
    describe_values(_enum, _descriptions)
