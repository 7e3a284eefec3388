"""The whole space as one FHIR R4B Bundle of type `collection`, written as it is read.

`Export.stream` yields the Bundle's JSON in pieces: one resource at a time, the rows read in
batches, the bytes of documents and attachments read from the blob store a chunk at a time
and base64-encoded as they go (their SHA-1, which FHIR's `Attachment.hash` wants, follows
them). A large space never sits whole in memory: only a batch of rows, a chunk of bytes, and
the ids of the professionals referred to (their `Practitioner` entries close the Bundle).

What the viewer reads is decided where every read decides it: the documents by
`models.document.document_scope` (a representative never exports a document hidden from
representatives), the log by `models.audit.readable_log` (nor its traces), the
conversations by `models.message.visible_conversations`.

The mapping (every resource valid under FHIR R4B; tests/test_fhir_export.py validates it
with `fhir.resources.R4B`); each entry's `fullUrl` is `urn:uuid:<its id>` and every
reference between entries is such a URN:

- the holder: `Patient` (the NIR as INS-NIR, `urn:oid:1.2.250.1.213.1.4.8`; the médecin
  traitant as `generalPractitioner`; the trusted person as a `contact`);
- the professionals referred to: `Practitioner` (RPPS, `urn:oid:1.2.250.1.71.4.2.1`);
- documents: `DocumentReference`, bytes inline; `type`: the LOINC document type of the
  category (DOCUMENT_TYPES), our category beside it; advance directives: a
  `DocumentReference` of LOINC 42348-3, the text inline;
- vaccinations: `Immunization`, the vaccine as a WHO ATC code (VACCINES; `OTHER` has only
  ours), the dose as `protocolApplied`;
- screenings: `Observation`, the LOINC code of the kind (SCREENINGS), the result as
  `valueString`; measurements: vital-sign `Observation`s (8302-2 height, 29463-7 weight,
  85354-9 blood pressure with 8480-6 and 8462-4), UCUM units;
- allergies, treatments, history: `AllergyIntolerance`, `MedicationStatement`,
  `Condition`, the text as entered;
- consents: `Consent` permit (READ: access; READ_WRITE: access and correct) over the
  consent's period; a block: `Consent` deny for that professional; an opposition to
  emergency access: `Consent` deny with purpose ETREAT;
- appointments: `Appointment` (SCHEDULED booked, CANCELLED cancelled, DONE fulfilled);
- messages: `Communication`, the conversation's subject as `topic`, each in response to
  the one before, attachments inline;
- the access log: `AuditEvent` (DICOM 110110 Patient Record, 110106 Export, 110112 Query;
  action R, U or E), our action, basis and role beside the standard codes; the reason and
  period of an emergency access on the EMERGENCY_OPEN event of its opening.

Codes of our own (category, action, basis, role, appointment source) use the systems
`urn:espace-sante:<name>`, so that nothing is lost for a system that reads them back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from uuid import UUID

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from models.access import Actor, Relation
from models.appointment import Appointment, AppointmentStatus
from models.audit import AccessAction, AccessBasis, AccessEvent, readable_log
from models.base import Entity
from models.blobs import BlobStore
from models.consent import Block, Consent, ConsentAccess, EmergencyAccess
from models.crypto import Vault
from models.document import Document, DocumentCategory, document_scope
from models.message import Attachment, Conversation, Message, SenderRole, visible_conversations
from models.patient import Patient, Sex, SpaceStatus, reveal_nir
from models.professional import Profession, Professional
from models.record import HealthProfile, Screening, ScreeningKind, Vaccination, VaccineCode

MEDIA_TYPE = "application/fhir+json"
BATCH = 200
CHUNK = 64 * 1024  # what the writer gathers before handing text on

LOINC = "http://loinc.org"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
OWN = "urn:espace-sante:"

# Document categories as LOINC document types (the French DMP's own choices where it has
# one: prescriptions, lab reports, imaging, vaccination history).
DOCUMENT_TYPES: dict[DocumentCategory, tuple[str, str]] = {
    DocumentCategory.PRESCRIPTION: ("57833-6", "Prescription for medication"),
    DocumentCategory.LAB_RESULT: ("11502-2", "Laboratory report"),
    DocumentCategory.IMAGING: ("18748-4", "Diagnostic imaging study"),
    DocumentCategory.REPORT: ("11488-4", "Consult note"),
    DocumentCategory.TREATMENT: ("18776-5", "Plan of care note"),
    DocumentCategory.VACCINATION: ("11369-6", "History of Immunization Narrative"),
    DocumentCategory.ADMINISTRATIVE: ("51851-4", "Administrative note"),
    DocumentCategory.OTHER: ("34109-9", "Note"),
}
ADVANCE_DIRECTIVES = ("42348-3", "Advance directives")

# Vaccines as WHO ATC codes (the system of the French vaccination record), at the level
# our codes name: a product (J07CA01), or a group of vaccines (J07BB, influenza).
VACCINES: dict[VaccineCode, tuple[str, str]] = {
    VaccineCode.DTP: ("J07CA01", "diphtheria-poliomyelitis-tetanus"),
    VaccineCode.DTCAP: ("J07CA02", "diphtheria-pertussis-poliomyelitis-tetanus"),
    VaccineCode.INFLUENZA: ("J07BB", "influenza vaccines"),
    VaccineCode.PNEUMOCOCCAL: ("J07AL", "pneumococcal vaccines"),
    VaccineCode.ZOSTER: ("J07BK", "varicella zoster vaccines"),
    VaccineCode.COVID19: ("J07BN", "covid-19 vaccines"),
    VaccineCode.HPV: ("J07BM", "papillomavirus vaccines"),
    VaccineCode.MMR: ("J07BD52", "measles, combinations with mumps and rubella, live attenuated"),
    VaccineCode.HEPATITIS_B: ("J07BC01", "hepatitis B, purified antigen"),
}

# Screening kinds as LOINC observation codes, and their observation category.
SCREENINGS: dict[ScreeningKind, tuple[str, str, str]] = {
    ScreeningKind.BREAST: ("24606-6", "Mammographie de dépistage", "imaging"),
    ScreeningKind.COLORECTAL: ("29771-3", "Test immunologique fécal (FIT)", "laboratory"),
    ScreeningKind.CERVICAL_CYTOLOGY: ("10524-7", "Examen cytologique cervical", "laboratory"),
    ScreeningKind.CERVICAL_HPV: ("30167-1", "Test HPV à haut risque, col", "laboratory"),
}

# The access log: what each action was, as the AuditEvent's action (C R U D E) and type.
AUDIT_ACTIONS: dict[AccessAction, tuple[str, str, str]] = {
    AccessAction.READ: ("R", "110110", "Patient Record"),
    AccessAction.DOWNLOAD: ("R", "110110", "Patient Record"),
    AccessAction.WRITE: ("U", "110110", "Patient Record"),
    AccessAction.EMERGENCY_OPEN: ("E", "110110", "Patient Record"),
    AccessAction.LOOKUP: ("E", "110112", "Query"),
    AccessAction.EXPORT: ("R", "110106", "Export"),
}
# Bases as HL7 v3 purposes of use, where one says the same.
PURPOSES: dict[AccessBasis, str] = {
    AccessBasis.CONSENT: "TREAT",
    AccessBasis.TREATING_DOCTOR: "TREAT",
    AccessBasis.AUTHOR: "TREAT",
    AccessBasis.CONVERSATION: "TREAT",
    AccessBasis.LOOKUP: "TREAT",
    AccessBasis.EMERGENCY: "ETREAT",
    AccessBasis.OPERATOR: "HOPERAT",
    AccessBasis.REPRESENTATIVE: "PWATRNY",
    AccessBasis.HOLDER: "PATRQT",
    AccessBasis.APP: "PATRQT",
}
APPOINTMENT_STATUS = {
    AppointmentStatus.SCHEDULED: "booked",
    AppointmentStatus.CANCELLED: "cancelled",
    AppointmentStatus.DONE: "fulfilled",
}


def urn(pk: UUID | str) -> str:
    return f"urn:uuid:{pk}"


def ref(pk: UUID | str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": urn(pk)}
    if display:
        out["display"] = display
    return out


def derived_id(pk: UUID, name: str) -> UUID:
    """A stable id for a resource made from part of a row (one allergy of a profile...)."""
    return uuid.uuid5(pk, name)


def instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def own(name: str, code: str) -> dict[str, Any]:
    return coding(f"{OWN}{name}", code)


# --- bytes, written as they are read ----------------------------------------------------


class Inline:
    """Bytes of the blob store, base64-encoded a chunk at a time as the JSON is written."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        self.sha1 = hashlib.sha1(usedforsecurity=False)  # FHIR Attachment.hash is SHA-1

    async def text(self, blobs: BlobStore) -> AsyncIterator[str]:
        rest = b""
        async for chunk in blobs.iter_chunks(self.sha256):
            self.sha1.update(chunk)
            data = rest + chunk
            cut = len(data) - len(data) % 3  # whole groups only: no padding mid-stream
            yield base64.b64encode(data[:cut]).decode("ascii")
            rest = data[cut:]
        yield base64.b64encode(rest).decode("ascii")


@dataclass(frozen=True)
class HashOf:
    """The SHA-1 of an Inline (base64), known once it has been written: put after it."""

    inline: Inline


def _streams(value: Any) -> bool:
    if isinstance(value, Inline | HashOf):
        return True
    if isinstance(value, dict):
        return any(_streams(v) for v in value.values())
    if isinstance(value, list):
        return any(_streams(v) for v in value)
    return False


async def _json(value: Any, blobs: BlobStore) -> AsyncIterator[str]:
    """JSON text of a resource; its Inline bytes streamed (keys keep their order)."""
    if isinstance(value, Inline):
        yield '"'
        async for text in value.text(blobs):
            yield text
        yield '"'
    elif isinstance(value, HashOf):
        yield json.dumps(base64.b64encode(value.inline.sha1.digest()).decode("ascii"))
    elif isinstance(value, dict) and _streams(value):
        for n, (key, item) in enumerate(value.items()):
            yield ("{" if n == 0 else ",") + json.dumps(key) + ":"
            async for text in _json(item, blobs):
                yield text
        yield "}"
    elif isinstance(value, list) and _streams(value):
        for n, item in enumerate(value):
            yield "[" if n == 0 else ","
            async for text in _json(item, blobs):
                yield text
        yield "]"
    else:
        yield json.dumps(value, ensure_ascii=False, separators=(",", ":"))


M = TypeVar("M", bound=Entity)


async def _batches(query: QuerySet[M], size: int = BATCH) -> AsyncIterator[list[M]]:
    """The rows of a query in creation order, a batch at a time (keyset on created_at, id)."""
    last: M | None = None
    while True:
        page = query
        if last is not None:
            page = page.filter(
                Q(created_at__gt=last.created_at) | Q(created_at=last.created_at, id__gt=last.id)
            )
        rows = list(await page.order_by("created_at", "id").limit(size))
        if rows:
            yield rows
        if len(rows) < size:
            return
        last = rows[-1]


# --- who is referred to -----------------------------------------------------------------


@dataclass
class People:
    """Names of the people the resources refer to, looked up a batch at a time; the
    professionals met, whose Practitioner entries close the Bundle."""

    holder: Patient
    professionals: dict[UUID, Professional] = field(default_factory=dict)
    patients: dict[UUID, Patient] = field(default_factory=dict)

    async def load(
        self, professional_ids: Iterable[UUID | None] = (), patient_ids: Iterable[UUID | None] = ()
    ) -> None:
        missing = {pk for pk in professional_ids if pk is not None} - set(self.professionals)
        if missing:
            for row in await Professional.filter(id__in=list(missing)):
                self.professionals[row.id] = row
        others = {pk for pk in patient_ids if pk is not None and pk != self.holder.id}
        others -= set(self.patients)
        if others:
            for patient in await Patient.filter(id__in=list(others)):
                self.patients[patient.id] = patient

    def professional(self, pk: UUID | None) -> dict[str, Any] | None:
        """A reference to a professional's Practitioner entry (None when unknown)."""
        row = self.professionals.get(pk) if pk is not None else None
        if row is None:
            return None
        return ref(row.id, f"{row.first_name} {row.last_name}")

    def patient(self, pk: UUID | None) -> dict[str, Any] | None:
        """The holder's Patient entry, or another patient (a representative) by name."""
        if pk is None:
            return None
        if pk == self.holder.id:
            return ref(pk, _name(self.holder))
        other = self.patients.get(pk)
        return {"display": _name(other)} if other is not None and other.first_name else None


def _name(patient: Patient) -> str:
    return f"{patient.first_name} {patient.last_name}".strip()


# --- the resources ----------------------------------------------------------------------


def patient_resource(
    patient: Patient, vault: Vault, people: People, profile: HealthProfile | None
) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": str(patient.id)}
    if patient.nir_encrypted:
        nir = reveal_nir(vault, patient.id, bytes(patient.nir_encrypted))
        resource["identifier"] = [{"system": INS_NIR, "value": nir}]
    resource["active"] = patient.status in (SpaceStatus.PENDING, SpaceStatus.ACTIVE)
    resource["name"] = [
        {"use": "official", "family": patient.last_name, "given": [patient.first_name]}
    ]
    if patient.contact_email:
        resource["telecom"] = [{"system": "email", "value": patient.contact_email}]
    resource["gender"] = "female" if patient.sex is Sex.FEMALE else "male"
    resource["birthDate"] = patient.birth_date.isoformat()
    address = patient.postal_address
    if address:
        lines = [address.get("line1"), address.get("line2")]
        resource["address"] = [
            {
                "use": "home",
                "line": [line for line in lines if line],
                "city": address.get("city"),
                "postalCode": address.get("postal_code"),
                "country": "FR",
            }
        ]
    trusted = profile.trusted_person if profile is not None else None
    if trusted:
        contact: dict[str, Any] = {
            "relationship": [{"text": "Personne de confiance"}],
            "name": {"text": trusted["name"]},
        }
        if trusted.get("phone"):
            contact["telecom"] = [{"system": "phone", "value": trusted["phone"]}]
        if trusted.get("relationship"):
            contact["relationship"].append({"text": trusted["relationship"]})
        resource["contact"] = [contact]
    doctor = people.professional(patient.treating_doctor_id)
    if doctor is not None:
        resource["generalPractitioner"] = [doctor]
    return resource


def practitioner_resource(row: Professional) -> dict[str, Any]:
    name: dict[str, Any] = {"family": row.last_name, "given": [row.first_name]}
    if row.profession is Profession.MEDECIN:
        name["prefix"] = ["Dr"]
    return {
        "resourceType": "Practitioner",
        "id": str(row.id),
        "identifier": [{"system": RPPS, "value": row.rpps}],
        "name": [name],
        "qualification": [{"code": {"coding": [own("profession", row.profession.value)]}}],
    }


def document_resource(
    row: Document, subject: dict[str, Any], author: dict[str, Any] | None
) -> dict[str, Any]:
    code, display = DOCUMENT_TYPES[row.category]
    data = Inline(row.sha256)
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": str(row.id),
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": urn(row.id)},
        "status": "current",
        "type": {
            "coding": [coding(LOINC, code, display), own("document-category", row.category.value)],
            "text": display,
        },
        "subject": subject,
        "date": instant(row.created_at),
    }
    if author is not None:
        resource["author"] = [author]
    resource["description"] = row.title
    labels = []
    if row.hidden:  # hidden by the holder from professionals
        labels.append(coding(f"{TERMINOLOGY}v3-Confidentiality", "R", "restricted"))
    if row.hidden_from_representatives:
        labels.append(own("hidden", "HIDDEN_FROM_REPRESENTATIVES"))
    if labels:
        resource["securityLabel"] = [{"coding": [label]} for label in labels]
    resource["content"] = [
        {
            "attachment": {
                "contentType": row.mime_type,
                "data": data,
                "size": row.size,
                "hash": HashOf(data),
                "title": row.title,
                "creation": row.date.isoformat(),
            }
        }
    ]
    return resource


def advance_directives_resource(profile: HealthProfile, subject: dict[str, Any]) -> dict[str, Any]:
    code, display = ADVANCE_DIRECTIVES
    text = (profile.advance_directives or "").encode("utf-8")
    resource = {
        "resourceType": "DocumentReference",
        "id": str(derived_id(profile.id, "advance-directives")),
        "status": "current",
        "type": {"coding": [coding(LOINC, code, display)], "text": "Directives anticipées"},
        "subject": subject,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text).decode("ascii"),
                    "size": len(text),
                    "title": "Directives anticipées",
                }
            }
        ],
    }
    if profile.updated_at is not None:
        resource["date"] = instant(profile.updated_at)
    return resource


def immunization_resource(
    row: Vaccination, subject: dict[str, Any], performer: dict[str, Any] | None
) -> dict[str, Any]:
    codings = []
    if row.vaccine in VACCINES:
        code, display = VACCINES[row.vaccine]
        codings.append(coding(ATC, code, display))
    codings.append(own("vaccine", row.vaccine.value))
    resource: dict[str, Any] = {
        "resourceType": "Immunization",
        "id": str(row.id),
        "status": "completed",
        "vaccineCode": {"coding": codings, "text": row.vaccine.value},
        "patient": subject,
        "occurrenceDateTime": row.date.isoformat(),
        "recorded": instant(row.created_at),
    }
    if row.lot_number:
        resource["lotNumber"] = row.lot_number
    if performer is not None:
        resource["performer"] = [{"actor": performer}]
    if row.dose_number is not None:
        resource["protocolApplied"] = [{"doseNumberPositiveInt": row.dose_number}]
    return resource


def screening_resource(row: Screening, subject: dict[str, Any]) -> dict[str, Any]:
    code, text, category = SCREENINGS[row.kind]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(row.id),
        "status": "final",
        "category": [{"coding": [coding(f"{TERMINOLOGY}observation-category", category)]}],
        "code": {"coding": [coding(LOINC, code), own("screening", row.kind.value)], "text": text},
        "subject": subject,
        "effectiveDateTime": row.date.isoformat(),
    }
    if row.result:
        resource["valueString"] = row.result
    return resource


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def measurement_resources(profile: HealthProfile, subject: dict[str, Any]) -> list[dict[str, Any]]:
    m = profile.measurements or {}
    when = m.get("measured_on") or (profile.updated_at and instant(profile.updated_at))
    vital = [
        {"coding": [coding(f"{TERMINOLOGY}observation-category", "vital-signs", "Vital Signs")]}
    ]

    def observation(name: str, code: str, display: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "resourceType": "Observation",
            "id": str(derived_id(profile.id, f"measurement:{name}")),
            "status": "final",
            "category": vital,
            "code": {"coding": [coding(LOINC, code, display)], "text": display},
            "subject": subject,
        }
        if when:
            out["effectiveDateTime"] = when
        return out

    found = []
    if m.get("height_cm") is not None:
        height = observation("height", "8302-2", "Body height")
        height["valueQuantity"] = _quantity(m["height_cm"], "cm")
        found.append(height)
    if m.get("weight_kg") is not None:
        weight = observation("weight", "29463-7", "Body weight")
        weight["valueQuantity"] = _quantity(m["weight_kg"], "kg")
        found.append(weight)
    pressures = [
        ("8480-6", "Systolic blood pressure", m.get("systolic_mmhg")),
        ("8462-4", "Diastolic blood pressure", m.get("diastolic_mmhg")),
    ]
    if any(value is not None for _, _, value in pressures):
        panel = observation("blood-pressure", "85354-9", "Blood pressure panel")
        panel["component"] = [
            {
                "code": {"coding": [coding(LOINC, code, display)]},
                "valueQuantity": _quantity(value, "mm[Hg]"),
            }
            for code, display, value in pressures
            if value is not None
        ]
        found.append(panel)
    return found


def profile_list_resources(profile: HealthProfile, subject: dict[str, Any]) -> list[dict[str, Any]]:
    """Allergies, treatments and history, one resource per entry, as the holder wrote them."""
    recorded = instant(profile.updated_at) if profile.updated_at is not None else None
    found: list[dict[str, Any]] = []
    for n, text in enumerate(profile.allergies or []):
        allergy: dict[str, Any] = {
            "resourceType": "AllergyIntolerance",
            "id": str(derived_id(profile.id, f"allergy:{n}")),
            "clinicalStatus": {
                "coding": [coding(f"{TERMINOLOGY}allergyintolerance-clinical", "active", "Active")]
            },
            "code": {"text": text},
            "patient": subject,
        }
        if recorded:
            allergy["recordedDate"] = recorded
        found.append(allergy)
    for n, text in enumerate(profile.treatments or []):
        statement: dict[str, Any] = {
            "resourceType": "MedicationStatement",
            "id": str(derived_id(profile.id, f"treatment:{n}")),
            "status": "active",
            "medicationCodeableConcept": {"text": text},
            "subject": subject,
        }
        if recorded:
            statement["dateAsserted"] = recorded
        found.append(statement)
    for n, text in enumerate(profile.history or []):
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "id": str(derived_id(profile.id, f"history:{n}")),
            "code": {"text": text},
            "subject": subject,
        }
        if recorded:
            condition["recordedDate"] = recorded
        found.append(condition)
    return found


_CONSENT_BASE = {
    "scope": {
        "coding": [coding(f"{TERMINOLOGY}consentscope", "patient-privacy", "Privacy Consent")]
    },
    "category": [{"coding": [coding(LOINC, "59284-0", "Patient Consent")]}],
}
_OPT_IN = {"coding": [coding(f"{TERMINOLOGY}v3-ActCode", "OPTIN", "opt-in")]}
_OPT_OUT = {"coding": [coding(f"{TERMINOLOGY}v3-ActCode", "OPTOUT", "opt-out")]}
_PRIMARY = {
    "coding": [
        coding(f"{TERMINOLOGY}v3-ParticipationType", "PRCP", "primary information recipient")
    ]
}


def consent_resource(
    row: Consent, subject: dict[str, Any], actor: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    end = row.revoked_at or row.expires_at
    actions = [{"coding": [coding(f"{TERMINOLOGY}consentaction", "access", "Access")]}]
    if row.access is ConsentAccess.READ_WRITE:
        actions.append(
            {"coding": [coding(f"{TERMINOLOGY}consentaction", "correct", "Access and Correct")]}
        )
    provision: dict[str, Any] = {
        "type": "permit",
        "period": {"start": instant(row.granted_at)},
        "action": actions,
    }
    if end is not None:
        provision["period"]["end"] = instant(end)
    if actor is not None:
        provision["actor"] = [{"role": _PRIMARY, "reference": actor}]
    return {
        "resourceType": "Consent",
        "id": str(row.id),
        "status": "active" if row.active_at(now) else "inactive",
        **_CONSENT_BASE,
        "patient": subject,
        "dateTime": instant(row.granted_at),
        "policyRule": _OPT_IN,
        "provision": provision,
    }


def block_resource(
    row: Block, subject: dict[str, Any], actor: dict[str, Any] | None
) -> dict[str, Any]:
    provision: dict[str, Any] = {"type": "deny"}
    if actor is not None:
        provision["actor"] = [{"role": _PRIMARY, "reference": actor}]
    return {
        "resourceType": "Consent",
        "id": str(row.id),
        "status": "active",
        **_CONSENT_BASE,
        "patient": subject,
        "dateTime": instant(row.created_at),
        "policyRule": _OPT_OUT,
        "provision": provision,
    }


def emergency_opposition_resource(patient: Patient, subject: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": str(derived_id(patient.id, "emergency-opposition")),
        "status": "active",
        **_CONSENT_BASE,
        "patient": subject,
        "policyRule": _OPT_OUT,
        "provision": {
            "type": "deny",
            "purpose": [coding(f"{TERMINOLOGY}v3-ActReason", "ETREAT", "Emergency Treatment")],
        },
    }


def appointment_resource(
    row: Appointment, subject: dict[str, Any], practitioner: dict[str, Any] | None
) -> dict[str, Any]:
    participants: list[dict[str, Any]] = [{"actor": subject, "status": "accepted"}]
    if practitioner is not None:
        participants.append({"actor": practitioner, "status": "accepted"})
    if row.location:
        participants.append(
            {
                "type": [
                    {"coding": [coding(f"{TERMINOLOGY}v3-ParticipationType", "LOC", "location")]}
                ],
                "actor": {"display": row.location},
                "status": "accepted",
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": str(row.id),
        "meta": {"tag": [own("appointment-source", row.source.value)]},
        "status": APPOINTMENT_STATUS[row.status],
    }
    if row.cancelled_reason:
        resource["cancelationReason"] = {"text": row.cancelled_reason}
    resource.update(
        {
            "description": row.title,
            "start": instant(row.starts_at),
            "end": instant(row.ends_at),
            "created": instant(row.created_at),
            "participant": participants,
        }
    )
    return resource


def communication_resource(
    row: Message,
    conversation: Conversation,
    attachments: list[Attachment],
    people: People,
    previous: UUID | None,
) -> dict[str, Any]:
    patient = people.patient(conversation.patient_id)
    professional = people.professional(conversation.professional_id)
    if row.sender_role is SenderRole.PROFESSIONAL:
        sender = people.professional(row.sender_professional_id)
        recipients = [patient]
    else:
        sender = people.patient(row.sender_patient_id)
        recipients = [professional]
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "id": str(row.id),
        "identifier": [{"system": f"{OWN}conversation", "value": str(conversation.id)}],
    }
    if previous is not None:
        resource["inResponseTo"] = [ref(previous)]
    resource.update(
        {
            "status": "completed",
            "subject": people.patient(people.holder.id),
            "topic": {"text": conversation.subject},
            "sent": instant(row.sent_at),
        }
    )
    found = [r for r in recipients if r is not None]
    if found:
        resource["recipient"] = found
    if sender is not None:
        resource["sender"] = sender
    payload: list[dict[str, Any]] = [{"contentString": row.body}]
    for attachment in attachments:
        data = Inline(attachment.sha256)
        payload.append(
            {
                "contentAttachment": {
                    "contentType": attachment.mime_type,
                    "data": data,
                    "size": attachment.size,
                    "hash": HashOf(data),
                    "title": attachment.filename,
                }
            }
        )
    resource["payload"] = payload
    return resource


_OBSERVER = {
    "site": "Mon espace santé",
    "observer": {"display": "Mon espace santé"},
    "type": [coding(f"{TERMINOLOGY}security-source-type", "4", "Application Server")],
}


def audit_resource(
    row: AccessEvent,
    people: People,
    document: dict[str, Any] | None,
    emergency: EmergencyAccess | None,
) -> dict[str, Any]:
    action, type_code, type_display = AUDIT_ACTIONS[row.action]
    who: dict[str, Any] | None
    if row.actor_role.value == "PROFESSIONAL":
        who = people.professional(row.actor_id)
    elif row.actor_role.value == "PATIENT":
        who = people.patient(row.actor_id)
    elif row.actor_role.value == "OPERATOR":
        who = {"display": "Opérateur de Mon espace santé"}
    else:
        who = {"display": "Application partenaire"}
    agent: dict[str, Any] = {
        "type": {"coding": [own("actor-role", row.actor_role.value)]},
        "who": who or {"display": row.actor_role.value},
        "requestor": True,
    }
    purpose: dict[str, Any] = {
        "coding": [
            coding(f"{TERMINOLOGY}v3-ActReason", PURPOSES[row.basis]),
            own("access-basis", row.basis.value),
        ]
    }
    entities: list[dict[str, Any]] = [
        {
            "what": people.patient(row.patient_id),
            "type": coding(f"{TERMINOLOGY}audit-entity-type", "1", "Person"),
            "role": coding(f"{TERMINOLOGY}object-role", "1", "Patient"),
        }
    ]
    if row.document_id is not None:
        what = document or {
            "identifier": {"system": "urn:ietf:rfc:3986", "value": urn(row.document_id)}
        }
        entities.append(
            {"what": what, "type": coding(f"{TERMINOLOGY}audit-entity-type", "2", "System Object")}
        )
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.id),
        "type": coding(DICOM, type_code, type_display),
        "subtype": [own("access-action", row.action.value)],
        "action": action,
        "recorded": instant(row.at),
        "outcome": "0",
    }
    if emergency is not None:
        resource["period"] = {
            "start": instant(emergency.opened_at),
            "end": instant(emergency.expires_at),
        }
        purpose["text"] = emergency.reason
    resource.update(
        {"purposeOfEvent": [purpose], "agent": [agent], "source": _OBSERVER, "entity": entities}
    )
    return resource


def emergency_resource(access: EmergencyAccess, people: People) -> dict[str, Any]:
    """An emergency access with no EMERGENCY_OPEN event of its own in the log."""
    return {
        "resourceType": "AuditEvent",
        "id": str(access.id),
        "type": coding(DICOM, "110110", "Patient Record"),
        "subtype": [own("access-action", AccessAction.EMERGENCY_OPEN.value)],
        "action": "E",
        "period": {"start": instant(access.opened_at), "end": instant(access.expires_at)},
        "recorded": instant(access.opened_at),
        "outcome": "0",
        "purposeOfEvent": [
            {
                "coding": [
                    coding(f"{TERMINOLOGY}v3-ActReason", "ETREAT"),
                    own("access-basis", AccessBasis.EMERGENCY.value),
                ],
                "text": access.reason,
            }
        ],
        "agent": [
            {
                "type": {"coding": [own("actor-role", "PROFESSIONAL")]},
                "who": people.professional(access.professional_id) or {"display": "PROFESSIONAL"},
                "requestor": True,
            }
        ],
        "source": _OBSERVER,
        "entity": [
            {
                "what": people.patient(access.patient_id),
                "type": coding(f"{TERMINOLOGY}audit-entity-type", "1", "Person"),
                "role": coding(f"{TERMINOLOGY}object-role", "1", "Patient"),
            }
        ],
    }


# --- the Bundle -------------------------------------------------------------------------


@dataclass
class Export:
    """One space as its viewer takes it out."""

    actor: Actor
    relation: Relation
    blobs: BlobStore
    vault: Vault
    now: datetime
    today: date
    bundle_id: UUID = field(default_factory=uuid.uuid4)

    def documents(self) -> Q | None:
        scope = document_scope(self.actor, self.relation)
        return None if scope is None else scope.q()

    async def missing_blobs(self) -> list[str]:
        """The digests of the bytes the export would write that the store lacks (checked
        before anything is written: once streaming, no error can be answered)."""
        queries: list[QuerySet[Any]] = []
        where = self.documents()
        if where is not None:
            queries.append(Document.filter(where))
        async for conversation in self._conversations():
            queries.append(Attachment.filter(message__conversation_id=conversation.id))
        missing: list[str] = []
        for query in queries:
            async for batch in _batches(query):
                for sha in sorted({row.sha256 for row in batch}):
                    if not await self.blobs.exists(sha):
                        missing.append(sha)
        return missing

    async def _conversations(self) -> AsyncIterator[Conversation]:
        """The space's conversations, as its viewer reads them."""
        where = visible_conversations(self.actor, [self.relation.patient_id])
        if where is None:
            return
        query = Conversation.filter(where, patient_id=self.relation.patient_id)
        async for batch in _batches(query):
            for row in batch:
                yield row

    async def stream(self) -> AsyncIterator[bytes]:
        """The Bundle's JSON, UTF-8, in pieces of about CHUNK characters."""
        pending: list[str] = []
        size = 0
        async for text in self._texts():
            pending.append(text)
            size += len(text)
            if size >= CHUNK:
                yield "".join(pending).encode("utf-8")
                pending, size = [], 0
        if pending:
            yield "".join(pending).encode("utf-8")

    async def _texts(self) -> AsyncIterator[str]:
        head = {
            "resourceType": "Bundle",
            "id": str(self.bundle_id),
            "meta": {"lastUpdated": instant(self.now)},
            "type": "collection",
            "timestamp": instant(self.now),
        }
        yield json.dumps(head, separators=(",", ":"))[:-1] + ',"entry":['
        first = True
        async for resource in self._resources():
            entry = {"fullUrl": urn(resource["id"]), "resource": resource}
            yield "" if first else ","
            first = False
            async for text in _json(entry, self.blobs):
                yield text
        yield "]}"

    async def _resources(self) -> AsyncIterator[dict[str, Any]]:
        pid = self.relation.patient_id
        patient = await Patient.get(id=pid)
        people = People(patient)
        subject = ref(pid, _name(patient))
        profile = await HealthProfile.get_or_none(patient_id=pid)
        await people.load([patient.treating_doctor_id])
        yield patient_resource(patient, self.vault, people, profile)

        where = self.documents()
        if where is not None:
            async for documents in _batches(Document.filter(where)):
                await people.load(
                    [d.author_professional_id for d in documents],
                    [d.author_patient_id for d in documents],
                )
                for document in documents:
                    author = people.professional(document.author_professional_id) or people.patient(
                        document.author_patient_id
                    )
                    yield document_resource(document, subject, author)
        if profile is not None and profile.advance_directives:
            yield advance_directives_resource(profile, subject)

        async for vaccinations in _batches(Vaccination.filter(patient_id=pid)):
            await people.load([v.professional_id for v in vaccinations])
            for vaccination in vaccinations:
                performer = people.professional(vaccination.professional_id)
                yield immunization_resource(vaccination, subject, performer)
        async for screenings in _batches(Screening.filter(patient_id=pid)):
            for screening in screenings:
                yield screening_resource(screening, subject)
        if profile is not None:
            for resource in measurement_resources(profile, subject):
                yield resource
            for resource in profile_list_resources(profile, subject):
                yield resource

        async for consents in _batches(Consent.filter(patient_id=pid)):
            await people.load([c.professional_id for c in consents])
            for consent in consents:
                actor = people.professional(consent.professional_id)
                yield consent_resource(consent, subject, actor, self.now)
        async for blocks in _batches(Block.filter(patient_id=pid)):
            await people.load([b.professional_id for b in blocks])
            for block in blocks:
                yield block_resource(block, subject, people.professional(block.professional_id))
        if patient.emergency_access_opposed:
            yield emergency_opposition_resource(patient, subject)

        async for appointments in _batches(Appointment.filter(patient_id=pid)):
            await people.load([a.professional_id for a in appointments])
            for appointment in appointments:
                practitioner = people.professional(appointment.professional_id)
                yield appointment_resource(appointment, subject, practitioner)

        async for conversation in self._conversations():
            await people.load([conversation.professional_id], [conversation.patient_id])
            previous: UUID | None = None
            async for messages in _batches(Message.filter(conversation_id=conversation.id)):
                await people.load(
                    [m.sender_professional_id for m in messages],
                    [m.sender_patient_id for m in messages],
                )
                files: dict[UUID, list[Attachment]] = {}
                for attachment in await Attachment.filter(
                    message_id__in=[m.id for m in messages]
                ).order_by("created_at", "id"):
                    files.setdefault(attachment.message_id, []).append(attachment)
                for message in sorted(messages, key=lambda m: (m.sent_at, m.id)):
                    yield communication_resource(
                        message, conversation, files.get(message.id, []), people, previous
                    )
                    previous = message.id

        async for resource in self._log(people, where):
            yield resource

        for professional in sorted(people.professionals.values(), key=lambda p: p.id):
            yield practitioner_resource(professional)

    async def _log(self, people: People, documents: Q | None) -> AsyncIterator[dict[str, Any]]:
        """The access log the viewer reads, in its order; each emergency access's reason
        on the EMERGENCY_OPEN event of its opening (the same moment, the same professional),
        and those without one as events of their own."""
        pid = self.relation.patient_id
        openings = {
            (access.professional_id, instant(access.opened_at)): access
            for access in await EmergencyAccess.filter(patient_id=pid)
        }
        await people.load([a.professional_id for a in openings.values()])
        matched: set[UUID] = set()
        readable = readable_log(self.relation)
        last = 0
        while True:
            events = list(
                await AccessEvent.filter(readable, seq__gt=last).order_by("seq").limit(BATCH)
            )
            if not events:
                break
            last = int(events[-1].seq)
            await people.load(
                [e.actor_id for e in events if e.actor_role.value == "PROFESSIONAL"],
                [e.actor_id for e in events if e.actor_role.value == "PATIENT"],
            )
            exported: set[UUID] = set()
            referred = [e.document_id for e in events if e.document_id is not None]
            if referred and documents is not None:
                found = await Document.filter(documents, id__in=referred).values_list(
                    "id", flat=True
                )
                exported = {UUID(str(pk)) for pk in found}
            for event in events:
                document = None
                if event.document_id is not None and event.document_id in exported:
                    document = ref(event.document_id)
                opening = None
                if event.action is AccessAction.EMERGENCY_OPEN:
                    opening = openings.get((event.actor_id, instant(event.at)))
                    if opening is not None:
                        matched.add(opening.id)
                yield audit_resource(event, people, document, opening)
            if len(events) < BATCH:
                break
        for access in openings.values():
            if access.id not in matched:
                yield emergency_resource(access, people)
