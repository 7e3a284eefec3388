"""GraphQL enums, mapped from the domain enums so the values stay in one place."""

from __future__ import annotations

import strawberry

from models.account import Role as _Role
from models.lifecycle import Channel as _Channel
from models.patient import Sex as _Sex
from models.patient import SpaceStatus as _SpaceStatus
from models.professional import Profession as _Profession
from models.professional import Sector as _Sector

Sex = strawberry.enum(_Sex, name="Sex")
SpaceStatus = strawberry.enum(
    _SpaceStatus, name="SpaceStatus", description="The lifecycle state of a space."
)
EnrollmentChannel = strawberry.enum(_Channel, name="EnrollmentChannel")
Sector = strawberry.enum(_Sector, name="Sector")
Profession = strawberry.enum(_Profession, name="Profession")
Role = strawberry.enum(_Role, name="Role")
