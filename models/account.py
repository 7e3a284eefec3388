"""Credentials and roles: one account table that every login goes through."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID

from tortoise import fields

from models.base import Entity

if TYPE_CHECKING:
    from models.patient import Patient
    from models.professional import Professional


class Role(StrEnum):
    PATIENT = "PATIENT"
    PROFESSIONAL = "PROFESSIONAL"
    OPERATOR = "OPERATOR"


class Operator(Entity):
    """Staff who enrol people and read the lifecycle status of a space, never its health data."""

    email = fields.CharField(max_length=254, unique=True)

    class Meta:
        table = "operator"


class Account(Entity):
    email = fields.CharField(max_length=254, unique=True)
    password_hash = fields.CharField(max_length=255, null=True)
    role = fields.CharEnumField(Role, max_length=16)
    patient: fields.OneToOneNullableRelation[Patient] = fields.OneToOneField(
        "models.Patient", related_name="account", null=True, on_delete=fields.CASCADE
    )
    professional: fields.OneToOneNullableRelation[Professional] = fields.OneToOneField(
        "models.Professional", related_name="account", null=True, on_delete=fields.CASCADE
    )
    operator: fields.OneToOneNullableRelation[Operator] = fields.OneToOneField(
        "models.Operator", related_name="account", null=True, on_delete=fields.CASCADE
    )
    patient_id: UUID | None
    professional_id: UUID | None
    operator_id: UUID | None

    class Meta:
        table = "account"
