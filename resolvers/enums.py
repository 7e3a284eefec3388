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

Sex = strawberry.enum(_Sex, name="Sex")
SpaceStatus = strawberry.enum(
    _SpaceStatus, name="SpaceStatus", description="The lifecycle state of a space."
)
EnrollmentChannel = strawberry.enum(_Channel, name="EnrollmentChannel")
Sector = strawberry.enum(_Sector, name="Sector")
Profession = strawberry.enum(_Profession, name="Profession")
Role = strawberry.enum(_Role, name="Role")

DocumentCategory = strawberry.enum(_DocumentCategory, name="DocumentCategory")
VaccineCode = strawberry.enum(_VaccineCode, name="VaccineCode")
ScreeningKind = strawberry.enum(_ScreeningKind, name="ScreeningKind")
ConsentAccess = strawberry.enum(_ConsentAccess, name="ConsentAccess")
AccessAction = strawberry.enum(_AccessAction, name="AccessAction")
AccessBasis = strawberry.enum(_AccessBasis, name="AccessBasis")
ActorRole = strawberry.enum(_ActorRole, name="ActorRole")
ReminderKind = strawberry.enum(_ReminderKind, name="ReminderKind")
ReminderStatus = strawberry.enum(_ReminderStatus, name="ReminderStatus")
AppointmentStatus = strawberry.enum(_AppointmentStatus, name="AppointmentStatus")
AppointmentSource = strawberry.enum(_AppointmentSource, name="AppointmentSource")
ConversationPurpose = strawberry.enum(
    _ConversationPurpose,
    name="ConversationPurpose",
    description="Why a conversation exists: care, or an establishment's admission, discharge "
    "or other paperwork.",
)
