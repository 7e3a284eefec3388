"""Establishments in the messagerie: their members, their shared inbox, and the operators'
mutations that register them and attach or detach their members.

The `Establishment` type itself is resolvers/people.py's (a professional's `establishment`
returns it); its inbox fields delegate here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import strawberry

from api.context import Info
from api.errors import NotFound
from models import establishment as establishments
from models.establishment import EstablishmentMember as EstablishmentMemberModel
from models.identifiers import normalize_finess
from models.professional import Establishment as EstablishmentModel
from resolvers import ids
from resolvers.enums import ConversationPurpose
from resolvers.messaging import (
    CONVERSATION_ORDER,
    Conversation,
    ConversationConnection,
    in_state,
    viewer_conversations,
)
from resolvers.pagination import paginate
from resolvers.people import Establishment, Professional
from resolvers.permissions import IsAuthenticated, IsOperator, guard

MEMBER_ORDER = ("since", "id")


@strawberry.type(
    name="EstablishmentMember",
    description="A professional who reads and answers an establishment's shared inbox.",
)
class EstablishmentMember:
    professional_id: strawberry.Private[UUID]
    since: datetime = strawberry.field(description="When an operator attached them.")

    @strawberry.field(description="The member.")
    async def professional(self, info: Info) -> Professional:
        row = await info.context.loaders.professional.load(self.professional_id)
        if row is None:  # a member's row goes with the professional's (CASCADE)
            raise NotFound()
        return Professional.from_model(row)

    @classmethod
    def from_model(cls, row: EstablishmentMemberModel) -> EstablishmentMember:
        return cls(professional_id=row.professional_id, since=row.since)


# --- the fields of Establishment and Professional (resolvers/people.py) ---------------------


async def establishment_conversations(
    info: Info,
    establishment_pk: UUID,
    first: int | None,
    after: str | None,
    purpose: ConversationPurpose | None,  # type: ignore[valid-type]
    *,
    unread: bool | None = None,
    open_: bool | None = None,
    last: int | None = None,
    before: str | None = None,
) -> ConversationConnection:
    """The shared inbox: the establishment's conversations the viewer takes part in (every
    one, for a member; the guard lets only members in), latest first; `unread` and `open_`
    as on a professional's own (`in_state`)."""
    query = (await viewer_conversations(info)).filter(establishment_id=establishment_pk)
    if purpose is not None:
        query = query.filter(purpose=purpose)
    query = in_state(info, query, unread=unread, open_=open_)
    return await paginate(
        query,
        CONVERSATION_ORDER,
        first=first,
        after=after,
        last=last,
        before=before,
        wrap=Conversation.from_model,
        connection=ConversationConnection,
    )


async def establishment_members(info: Info, establishment_pk: UUID) -> list[EstablishmentMember]:
    rows = await EstablishmentMemberModel.filter(establishment_id=establishment_pk).order_by(
        *MEMBER_ORDER
    )
    return [EstablishmentMember.from_model(row) for row in rows]


async def professional_memberships(info: Info, professional_pk: UUID) -> list[Establishment]:
    rows = await EstablishmentModel.filter(members__professional_id=professional_pk).order_by(
        "name", "id"
    )
    return [Establishment.from_model(row) for row in rows]


# --- queries and mutations --------------------------------------------------------------


@strawberry.input
class RegisterEstablishmentInput:
    finess: str = strawberry.field(description="9 characters, Luhn key (but 2A/2B).")
    name: str = strawberry.field(description="Its name, as patients will see it.")


@strawberry.type
class RegisterEstablishmentPayload:
    establishment: Establishment = strawberry.field(description="The establishment registered.")


@strawberry.input
class AddEstablishmentMemberInput:
    establishment_id: strawberry.ID = strawberry.field(description="The establishment.")
    professional_id: strawberry.ID = strawberry.field(
        description="The professional who becomes a member of its shared inbox."
    )


@strawberry.type
class AddEstablishmentMemberPayload:
    establishment: Establishment = strawberry.field(description="The establishment.")


@strawberry.input
class RemoveEstablishmentMemberInput:
    establishment_id: strawberry.ID = strawberry.field(description="The establishment.")
    professional_id: strawberry.ID = strawberry.field(
        description="The member who leaves: their access ends at once, open sockets included."
    )


@strawberry.type
class RemoveEstablishmentMemberPayload:
    establishment: Establishment = strawberry.field(description="The establishment.")


def _member_ids(
    input: AddEstablishmentMemberInput | RemoveEstablishmentMemberInput,
) -> tuple[UUID, UUID]:
    return (
        ids.decode_as(str(input.establishment_id), "Establishment"),
        ids.decode_as(str(input.professional_id), "Professional"),
    )


async def _establishment(pk: UUID) -> Establishment:
    return Establishment.from_model(await EstablishmentModel.get(id=pk))


@strawberry.type
class EstablishmentQuery:
    @strawberry.field(
        description=(
            "An establishment by its FINESS number (authenticated users); NOT_FOUND when "
            "none is known."
        ),
        extensions=guard(IsAuthenticated()),
    )
    async def establishment_by_finess(
        self,
        info: Info,
        finess: Annotated[
            str, strawberry.argument(description="9 characters; spaces are ignored.")
        ],
    ) -> Establishment | None:
        row = await EstablishmentModel.get_or_none(finess=normalize_finess(finess))
        if row is None:
            raise NotFound()
        return Establishment.from_model(row)


@strawberry.type
class EstablishmentMutation:
    @strawberry.mutation(
        description=(
            "OPERATOR: register an establishment (FINESS) and its name; one named already is "
            "a CONFLICT, one a professional's registration declared gets its name."
        ),
        extensions=guard(IsOperator()),
    )
    async def register_establishment(
        self, info: Info, input: RegisterEstablishmentInput
    ) -> RegisterEstablishmentPayload:
        row = await establishments.register_establishment(input.finess, input.name)
        return RegisterEstablishmentPayload(establishment=Establishment.from_model(row))

    @strawberry.mutation(
        description=(
            "OPERATOR: attach a professional to the establishment's shared inbox: they read, "
            "answer, mark read and close its conversations, and receive them live."
        ),
        extensions=guard(IsOperator()),
    )
    async def add_establishment_member(
        self, info: Info, input: AddEstablishmentMemberInput
    ) -> AddEstablishmentMemberPayload:
        establishment_pk, professional_pk = _member_ids(input)
        await establishments.add_member(establishment_pk, professional_pk, now=info.context.now)
        return AddEstablishmentMemberPayload(establishment=await _establishment(establishment_pk))

    @strawberry.mutation(
        description=(
            "OPERATOR: detach a member: from now on no path lets them see the inbox, their "
            "open subscriptions included."
        ),
        extensions=guard(IsOperator()),
    )
    async def remove_establishment_member(
        self, info: Info, input: RemoveEstablishmentMemberInput
    ) -> RemoveEstablishmentMemberPayload:
        establishment_pk, professional_pk = _member_ids(input)
        await establishments.remove_member(establishment_pk, professional_pk)
        return RemoveEstablishmentMemberPayload(
            establishment=await _establishment(establishment_pk)
        )
