"""Mutations of the space lifecycle: enrolment, activation, opposition, closing."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import strawberry

from api.context import Info
from api.errors import BadUserInput, NotFound
from models import lifecycle
from models.account import Account
from models.patient import add_dependent
from models.professional import Registration, register_professional
from resolvers import ids
from resolvers.enums import EnrollmentChannel, Profession, Sector, Sex
from resolvers.people import PATIENT_AFTER_WRITE, Patient, Professional, patient_after_write
from resolvers.permissions import IsOperator, IsPatient, guard
from resolvers.scope import SPACE_ID, patient_scope
from subscriptions.channels import publish_revoked


@strawberry.input(description="A postal address in France, for a code sent by post.")
class PostalAddressInput:
    line1: str = strawberry.field(description="The street address.")
    postal_code: str = strawberry.field(description="The French postal code: 5 digits.")
    city: str = strawberry.field(description="The town or city.")
    line2: str | None = strawberry.field(
        default=None, description="A further line (building, floor…), if any."
    )


@strawberry.input
class EnrollPatientInput:
    nir: str = strawberry.field(
        description="The person's NIR: 15 characters with its key; spaces ignored."
    )
    first_name: str = strawberry.field(description="First name, as on the person's records.")
    last_name: str = strawberry.field(description="Last name, as on the person's records.")
    birth_date: date = strawberry.field(
        description="Birth date: a plausible one, not in the future."
    )
    sex: Sex = strawberry.field(description="The person's sex.")  # type: ignore[valid-type]
    channel: EnrollmentChannel = strawberry.field(  # type: ignore[valid-type]
        description="How the confidential code is sent."
    )
    email: str | None = strawberry.field(
        default=None, description="Where to send the code: required for EMAIL."
    )
    postal_address: PostalAddressInput | None = strawberry.field(
        default=None, description="Where to send the code: required for POST."
    )
    representative_id: strawberry.ID | None = strawberry.field(
        default=None, description="Required for a minor: the code goes to this representative."
    )


@strawberry.type
class EnrollPatientPayload:
    patient: Patient = strawberry.field(description="The person enrolled, PENDING.")


@strawberry.input
class ReissueActivationCodeInput:
    patient_id: strawberry.ID = strawberry.field(description="The person enrolled.")
    channel: EnrollmentChannel | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="How to send it; absent: as the last code was sent."
    )
    email: str | None = strawberry.field(
        default=None, description="A new contact e-mail for the person (kept for later codes)."
    )
    postal_address: PostalAddressInput | None = strawberry.field(
        default=None, description="A new postal address for the person (kept for later codes)."
    )


@strawberry.type
class ReissueActivationCodePayload:
    patient: Patient = strawberry.field(description="The person the code was sent for.")


@strawberry.input
class ActivateSpaceInput:
    code: str = strawberry.field(description="The confidential code the person received.")
    nir: str = strawberry.field(
        description="The person's NIR: 15 characters with its key; spaces ignored."
    )
    birth_date: date = strawberry.field(description="The person's birth date.")
    email: str | None = strawberry.field(
        default=None,
        description="The login e-mail an adult chooses; absent for a minor's space.",
    )
    password: str | None = strawberry.field(
        default=None,
        description=(
            "The password an adult chooses: 12 characters at least, without the e-mail's "
            "local part or the holder's names; absent for a minor's space."
        ),
    )


@strawberry.type
class ActivateSpacePayload:
    patient: Patient = strawberry.field(description="The space, ACTIVE.")


@strawberry.input
class OpposeSpaceInput:
    code: str = strawberry.field(description="The confidential code the person received.")
    nir: str = strawberry.field(
        description="The person's NIR: 15 characters with its key; spaces ignored."
    )
    birth_date: date = strawberry.field(description="The person's birth date.")


@strawberry.type
class OpposeSpacePayload:
    opposed: bool = strawberry.field(
        description="true: the space will not be created; only the proof of opposition is kept."
    )


@strawberry.input
class CloseSpaceInput:
    password: str = strawberry.field(description="The caller's own password, re-entered.")
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=SPACE_ID)


@strawberry.type
class CloseSpacePayload:
    patient: Patient = strawberry.field(description="The space, CLOSED.")


@strawberry.input
class RequestDeletionInput:
    password: str = strawberry.field(description="The caller's own password, re-entered.")
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=SPACE_ID)


@strawberry.type
class RequestDeletionPayload:
    delete_by: datetime = strawberry.field(
        description="When the closed space is deleted at the latest (3 months from the request)."
    )
    patient_pk: strawberry.Private[UUID]

    @strawberry.field(description=PATIENT_AFTER_WRITE)
    async def patient(self, info: Info) -> Patient | None:
        return await patient_after_write(info, self.patient_pk)


@strawberry.input
class RegisterProfessionalInput:
    rpps: str = strawberry.field(description="Their RPPS number: 11 digits.")
    first_name: str = strawberry.field(description="First name, as in the directory.")
    last_name: str = strawberry.field(description="Last name, as in the directory.")
    profession: Profession = strawberry.field(  # type: ignore[valid-type]
        description="Their profession."
    )
    sector: Sector = strawberry.field(description="Their sector.")  # type: ignore[valid-type]
    email: str = strawberry.field(description="Their login e-mail.")
    password: str = strawberry.field(
        description=(
            "Their password: 12 characters at least, without the e-mail's local part or "
            "their names."
        )
    )
    finess: str | None = strawberry.field(
        default=None,
        description="The FINESS of the establishment they practise in (9 characters), if any.",
    )


@strawberry.type
class RegisterProfessionalPayload:
    professional: Professional = strawberry.field(description="The professional registered.")


@strawberry.input
class AddDependentInput:
    representative_id: strawberry.ID = strawberry.field(
        description="The adult who becomes a legal representative."
    )
    dependent_id: strawberry.ID = strawberry.field(description="The minor they represent.")


@strawberry.type
class AddDependentPayload:
    representative: Patient = strawberry.field(
        description="The representative, `dependents` now including the minor."
    )


def _patient_pk(value: strawberry.ID, field: str) -> UUID:
    try:
        return ids.decode_as(str(value), "Patient")
    except NotFound:
        raise BadUserInput("Unknown patient.", field=field) from None


def _address(value: PostalAddressInput) -> lifecycle.PostalAddress:
    return lifecycle.PostalAddress(
        line1=value.line1, line2=value.line2, postal_code=value.postal_code, city=value.city
    )


@strawberry.type
class LifecycleMutation:
    @strawberry.mutation(
        description="OPERATOR: enrol a person; the confidential code goes out at once.",
        extensions=guard(IsOperator()),
    )
    async def enroll_patient(self, info: Info, input: EnrollPatientInput) -> EnrollPatientPayload:
        address = input.postal_address
        patient = await lifecycle.enroll_patient(
            lifecycle.Enrolment(
                nir=input.nir,
                first_name=input.first_name,
                last_name=input.last_name,
                birth_date=input.birth_date,
                sex=input.sex,
                channel=input.channel,
                email=input.email,
                postal_address=_address(address) if address else None,
                representative_id=_patient_pk(input.representative_id, "representativeId")
                if input.representative_id
                else None,
            ),
            vault=info.context.vault,
            mailer=info.context.settings.mailer,
            now=info.context.now,
        )
        return EnrollPatientPayload(patient=Patient.from_model(patient))

    @strawberry.mutation(
        description="OPERATOR: send a new code (the earlier one stops working).",
        extensions=guard(IsOperator()),
    )
    async def reissue_activation_code(
        self, info: Info, input: ReissueActivationCodeInput
    ) -> ReissueActivationCodePayload:
        address = input.postal_address
        patient = await lifecycle.reissue_code(
            ids.decode_as(str(input.patient_id), "Patient"),
            channel=input.channel,
            vault=info.context.vault,
            mailer=info.context.settings.mailer,
            now=info.context.now,
            email=input.email,
            postal_address=_address(address) if address else None,
        )
        return ReissueActivationCodePayload(patient=Patient.from_model(patient))

    @strawberry.mutation(
        description=(
            "Activate (or reopen) a space with the code, NIR and birth date. An adult chooses "
            "an e-mail and password; a minor's space is activated by a logged-in representative."
        )
    )
    async def activate_space(self, info: Info, input: ActivateSpaceInput) -> ActivateSpacePayload:
        patient = await lifecycle.activate_space(
            lifecycle.CodeProof(code=input.code, nir=input.nir, birth_date=input.birth_date),
            email=input.email,
            password=input.password,
            actor=info.context.actor,
            vault=info.context.vault,
            now=info.context.now,
        )
        # New credentials on an existing account ended its sessions: its live streams stop.
        accounts = await Account.filter(patient_id=patient.id).values_list("id", flat=True)
        await publish_revoked(info.context.services.bus, accounts=[UUID(str(a)) for a in accounts])
        return ActivateSpacePayload(patient=Patient.from_model(patient))

    @strawberry.mutation(description="Oppose the creation of a space, before it is created.")
    async def oppose_space(self, info: Info, input: OpposeSpaceInput) -> OpposeSpacePayload:
        opposed = await lifecycle.oppose_space(
            lifecycle.CodeProof(code=input.code, nir=input.nir, birth_date=input.birth_date),
            actor=info.context.actor,
            vault=info.context.vault,
            mailer=info.context.settings.mailer,
            blobs=info.context.services.blobs,
            now=info.context.now,
        )
        return OpposeSpacePayload(opposed=opposed)

    @strawberry.mutation(
        description="Close the space (password re-entered): sessions end, data are archived.",
        extensions=guard(IsPatient()),
    )
    async def close_space(self, info: Info, input: CloseSpaceInput) -> CloseSpacePayload:
        # A closed space reaches the domain, which answers CONFLICT rather than FORBIDDEN.
        pk, _ = await patient_scope(info, input.patient_id, allow_closed=True)
        patient = await lifecycle.close_space(
            pk,
            account_id=info.context.actor.account_id,
            password=input.password,
            client=info.context.client,
            vault=info.context.vault,
            now=info.context.now,
        )
        accounts = await Account.filter(patient_id=pk).values_list("id", flat=True)
        await publish_revoked(info.context.services.bus, accounts=[UUID(str(a)) for a in accounts])
        return CloseSpacePayload(patient=Patient.from_model(patient))

    @strawberry.mutation(
        description="Ask for the deletion of a closed space; honoured by deleteBy at the latest.",
        extensions=guard(IsPatient()),
    )
    async def request_deletion(
        self, info: Info, input: RequestDeletionInput
    ) -> RequestDeletionPayload:
        pk, _ = await patient_scope(info, input.patient_id, allow_closed=True)
        delete_by = await lifecycle.request_deletion(
            pk,
            account_id=info.context.actor.account_id,
            password=input.password,
            client=info.context.client,
            vault=info.context.vault,
            now=info.context.now,
        )
        return RequestDeletionPayload(delete_by=delete_by, patient_pk=pk)

    @strawberry.mutation(
        description="OPERATOR: register a professional (RPPS) and their credentials.",
        extensions=guard(IsOperator()),
    )
    async def register_professional(
        self, info: Info, input: RegisterProfessionalInput
    ) -> RegisterProfessionalPayload:
        professional = await register_professional(
            Registration(
                rpps=input.rpps,
                first_name=input.first_name,
                last_name=input.last_name,
                profession=input.profession,
                sector=input.sector,
                email=input.email,
                password=input.password,
                finess=input.finess,
            )
        )
        return RegisterProfessionalPayload(professional=Professional.from_model(professional))

    @strawberry.mutation(
        description="OPERATOR: link a further legal representative to a minor.",
        extensions=guard(IsOperator()),
    )
    async def add_dependent(self, info: Info, input: AddDependentInput) -> AddDependentPayload:
        representative = await add_dependent(
            _patient_pk(input.representative_id, "representativeId"),
            _patient_pk(input.dependent_id, "dependentId"),
            today=info.context.today,
        )
        return AddDependentPayload(representative=Patient.from_model(representative))
