"""The FHIR export maps every code of the domain faithfully: a space holding a document of
each category, a vaccination of each vaccine, a screening of each kind, measurements,
allergies, treatments, history, advance directives, a consent, a block, an opposition to
emergency access, an appointment of each status and an access of each kind comes out with
each row once, under its standard code (LOINC, WHO ATC, DICOM, HL7 v3) and ours beside it,
every resource valid FHIR R4B and every reference resolving within the Bundle."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import httpx

from models import fhir
from models.appointment import Appointment, AppointmentSource, AppointmentStatus
from models.audit import AccessAction, AccessBasis, AccessEvent, ActorRole, AuditTrail
from models.base import utcnow
from models.consent import Block, ConsentAccess
from models.document import Document, DocumentCategory
from models.patient import Patient
from models.professional import Professional
from models.record import HealthProfile, Screening, ScreeningKind, Vaccination, VaccineCode
from tests.factories import make_patient, make_professional
from tests.test_documents import add, grant
from tests.test_fhir_export import codes, export, of_type, validated

OWN = fhir.OWN

# The codes, as checked against LOINC, the WHO ATC index and DICOM PS3.16 (not read from
# models/fhir.py, so that a code changed there by mistake fails here).
LOINC_OF_CATEGORY = {
    "PRESCRIPTION": "57833-6",  # Prescription for medication
    "LAB_RESULT": "11502-2",  # Laboratory report
    "IMAGING": "18748-4",  # Diagnostic imaging study
    "REPORT": "11488-4",  # Consult note
    "TREATMENT": "18776-5",  # Plan of care note
    "VACCINATION": "11369-6",  # History of Immunization Narrative
    "ADMINISTRATIVE": "51851-4",  # Administrative note
    "OTHER": "34109-9",  # Note
}
ATC_OF_VACCINE = {
    "DTP": "J07CA01",
    "DTCAP": "J07CA02",
    "INFLUENZA": "J07BB",
    "PNEUMOCOCCAL": "J07AL",
    "ZOSTER": "J07BK",
    "COVID19": "J07BN",
    "HPV": "J07BM",
    "MMR": "J07BD52",
    "HEPATITIS_B": "J07BC01",
    "OTHER": None,  # ours only
}
LOINC_OF_SCREENING = {
    "BREAST": "24606-6",  # MG Breast Screening
    "COLORECTAL": "29771-3",  # Hemoglobin.gastrointestinal in Stool by Immunoassay (FIT)
    "CERVICAL_CYTOLOGY": "10524-7",  # Microscopic observation in Cervix by Cyto stain
    "CERVICAL_HPV": "30167-1",  # HPV high-risk DNA in Cervix by Probe
}
DICOM_OF_ACTION = {  # (AuditEvent.action, DICOM event type)
    "READ": ("R", "110110"),
    "DOWNLOAD": ("R", "110110"),
    "WRITE": ("U", "110110"),
    "EMERGENCY_OPEN": ("E", "110110"),
    "LOOKUP": ("E", "110112"),
    "EXPORT": ("R", "110106"),
}


def own_codes(concept: dict[str, Any], name: str) -> list[str]:
    return codes(concept, f"{OWN}{name}")


async def test_every_code_of_the_domain_is_exported_under_its_standard_code(
    client: httpx.AsyncClient,
) -> None:
    # given a space holding one of each kind of row
    holder = await make_patient("Alice", "Lefebvre")
    doctor = await make_professional("Garnier")
    blocked = await make_professional("Bloque")
    await grant(holder, doctor, ConsentAccess.READ_WRITE)
    pid = holder.patient.id
    for category in DocumentCategory:
        await add(
            client, doctor.token, patientId=holder.id, category=category.value, title=category
        )
    day = date(2025, 3, 1)
    for n, vaccine in enumerate(VaccineCode):
        await Vaccination.create(
            patient_id=pid, vaccine=vaccine, date=day, dose_number=n + 1, professional_id=doctor.pk
        )
    for kind in ScreeningKind:
        await Screening.create(patient_id=pid, kind=kind, date=day, result=f"résultat {kind}")
    await HealthProfile.create(
        patient_id=pid,
        allergies=["pénicilline", "arachide"],
        treatments=["levothyroxine 75 µg"],
        history=["appendicectomie (2001)", "asthme", "fracture du poignet"],
        measurements={
            "height_cm": 168,
            "weight_kg": 61.5,
            "systolic_mmhg": 121,
            "diastolic_mmhg": 79,
            "measured_on": "2025-02-01",
        },
        advance_directives="Pas d'acharnement thérapeutique.",
        trusted_person={"name": "Marc Lefebvre", "phone": "+33612345678", "relationship": "frère"},
    )
    await Block.create(patient_id=pid, professional_id=blocked.pk)
    await Patient.filter(id=pid).update(emergency_access_opposed=True, treating_doctor_id=doctor.pk)
    now = utcnow()
    for n, status in enumerate(AppointmentStatus):
        await Appointment.create(
            patient_id=pid,
            professional_id=doctor.pk,
            starts_at=now + timedelta(days=n + 1),
            ends_at=now + timedelta(days=n + 1, minutes=30),
            title=f"Consultation {status}",
            location="Cabinet",
            status=status,
            source=AppointmentSource.PROFESSIONAL,
            cancelled_reason="empêchement" if status is AppointmentStatus.CANCELLED else None,
        )
    trail = AuditTrail(
        request_id=uuid.uuid4().hex,
        actor_id=uuid.UUID(str(doctor.pk)),
        actor_role=ActorRole.PROFESSIONAL,
        now=now,
    )
    for logged in (AccessAction.READ, AccessAction.DOWNLOAD, AccessAction.LOOKUP):
        await trail.record(patient_id=pid, action=logged, basis=AccessBasis.CONSENT)

    # when the holder exports it
    bundle = validated(await export(client, holder.id, holder.token))

    # then each document is under the LOINC type of its category, ours beside it
    documents = {str(d.id): d for d in await Document.filter(patient_id=pid)}
    references = {r["id"]: r for r in of_type(bundle, "DocumentReference")}
    assert set(documents) < set(references)  # and the advance directives
    for pk, document in documents.items():
        concept = references[pk]["type"]
        assert codes(concept, "http://loinc.org") == [LOINC_OF_CATEGORY[document.category.value]]
        assert own_codes(concept, "document-category") == [document.category.value]
    (directives,) = [r for pk, r in references.items() if pk not in documents]
    assert codes(directives["type"], "http://loinc.org") == ["42348-3"]
    assert sorted(codes(r["type"], "http://loinc.org")[0] for r in references.values()) == sorted(
        [*LOINC_OF_CATEGORY.values(), "42348-3"]
    )
    # each vaccination under its WHO ATC code (OTHER under ours only), its dose kept
    vaccinations = {str(v.id): v for v in await Vaccination.filter(patient_id=pid)}
    immunizations = {r["id"]: r for r in of_type(bundle, "Immunization")}
    assert set(immunizations) == set(vaccinations)
    for pk, vaccination in vaccinations.items():
        resource = immunizations[pk]
        atc = ATC_OF_VACCINE[vaccination.vaccine.value]
        assert codes(resource["vaccineCode"], "http://www.whocc.no/atc") == ([atc] if atc else [])
        assert own_codes(resource["vaccineCode"], "vaccine") == [vaccination.vaccine.value]
        assert resource["protocolApplied"] == [{"doseNumberPositiveInt": vaccination.dose_number}]
        assert resource["performer"] == [
            {"actor": {"reference": f"urn:uuid:{doctor.pk}", "display": "Paul Garnier"}}
        ]
    # each screening under the LOINC code of its kind, its result as written
    observations = {r["id"]: r for r in of_type(bundle, "Observation")}
    for screening in await Screening.filter(patient_id=pid):
        resource = observations.pop(str(screening.id))
        assert codes(resource["code"], "http://loinc.org") == [
            LOINC_OF_SCREENING[screening.kind.value]
        ]
        assert own_codes(resource["code"], "screening") == [screening.kind.value]
        assert resource["valueString"] == screening.result
    # the measurements: height, weight, and the blood pressure panel, in UCUM units
    measured = {codes(r["code"], "http://loinc.org")[0]: r for r in observations.values()}
    assert set(measured) == {"8302-2", "29463-7", "85354-9"}
    assert measured["8302-2"]["valueQuantity"]["value"] == 168
    assert measured["29463-7"]["valueQuantity"]["code"] == "kg"
    assert {
        codes(c["code"], "http://loinc.org")[0]: c["valueQuantity"]["value"]
        for c in measured["85354-9"]["component"]
    } == {"8480-6": 121, "8462-4": 79}
    # allergies, treatments and history, one resource per entry, as written
    assert [r["code"]["text"] for r in of_type(bundle, "AllergyIntolerance")] == [
        "pénicilline",
        "arachide",
    ]
    assert [
        r["medicationCodeableConcept"]["text"] for r in of_type(bundle, "MedicationStatement")
    ] == ["levothyroxine 75 µg"]
    assert len(of_type(bundle, "Condition")) == 3
    # the consent a permit, the block and the opposition denials
    consents = of_type(bundle, "Consent")
    kinds = sorted(
        (
            c["provision"]["type"],
            c["provision"].get("actor", [{}])[0].get("reference", {}).get("reference", ""),
        )
        for c in consents
    )
    assert kinds == sorted(
        [("permit", f"urn:uuid:{doctor.pk}"), ("deny", f"urn:uuid:{blocked.pk}"), ("deny", "")]
    )
    (opposition,) = [c for c in consents if "purpose" in c["provision"]]
    assert [p["code"] for p in opposition["provision"]["purpose"]] == ["ETREAT"]
    # the médecin traitant, each appointment under its FHIR status
    (patient,) = of_type(bundle, "Patient")
    assert patient["generalPractitioner"] == [
        {"reference": f"urn:uuid:{doctor.pk}", "display": "Paul Garnier"}
    ]
    assert sorted(a["status"] for a in of_type(bundle, "Appointment")) == [
        "booked",
        "cancelled",
        "fulfilled",
    ]
    # each access under its DICOM event type and action, ours beside it
    audit = {r["id"]: r for r in of_type(bundle, "AuditEvent")}
    for event in await AccessEvent.filter(patient_id=pid):
        resource = audit[str(event.id)]
        action, type_code = DICOM_OF_ACTION[event.action.value]
        assert (resource["action"], resource["type"]["code"]) == (action, type_code)
        assert [c["code"] for c in resource["subtype"]] == [event.action.value]
        purpose = resource["purposeOfEvent"][0]
        assert codes(purpose, fhir.TERMINOLOGY + "v3-ActReason") == [fhir.PURPOSES[event.basis]]
        assert own_codes(purpose, "access-basis") == [event.basis.value]
    actions = {r["subtype"][0]["code"] for r in audit.values()}
    assert actions >= {"READ", "DOWNLOAD", "LOOKUP", "WRITE", "EXPORT"}
    # and the professionals referred to, each once, with their RPPS
    practitioners = {r["id"]: r for r in of_type(bundle, "Practitioner")}
    assert set(practitioners) == {str(doctor.pk), str(blocked.pk)}
    rpps = (await Professional.get(id=doctor.pk)).rpps
    assert practitioners[str(doctor.pk)]["identifier"] == [{"system": fhir.RPPS, "value": rpps}]
