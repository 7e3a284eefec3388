"""Messagerie santé: conversation and message types, queries and mutations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import strawberry
from strawberry.file_uploads import Upload
from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from api.context import Info
from api.errors import BadUserInput, Forbidden, NotFound, PayloadTooLarge, Unauthenticated
from models import message as messaging
from models.access import Actor
from models.audit import AccessAction, AccessBasis
from models.document import DocumentCategory as DocumentCategoryModel
from models.message import Attachment as AttachmentModel
from models.message import Conversation as ConversationModel
from models.message import ConversationPurpose as ConversationPurposeModel
from models.message import Message as MessageModel
from models.message import SenderRole
from resolvers import ids
from resolvers.audit import logged_write
from resolvers.cost import READS_DATABASE, sized
from resolvers.dossier import Document
from resolvers.enums import ConversationPurpose, DocumentCategory
from resolvers.node import Node, register
from resolvers.pagination import PAGE, Connection, Order, paginate
from resolvers.people import Establishment, Patient, Professional
from subscriptions.channels import publish_message

MESSAGE_ORDER = Order((("sent_at", False), ("id", False)))
CONVERSATION_ORDER = Order((("last_message_at", True), ("id", True)))

Sender = Annotated[Patient | Professional, strawberry.union("MessageSender")]


async def log_member_read(
    info: Info,
    *,
    patient_id: UUID,
    establishment_id: UUID | None,
    senders: Iterable[SenderRole],
    action: AccessAction = AccessAction.READ,
) -> None:
    """A member of an establishment reading a patient's message of its shared inbox (any of
    `senders` the patient side): an access event naming the member and the establishment."""
    actor = info.context.actor
    if not any(messaging.member_read(actor, establishment_id, role) for role in senders):
        return
    await info.context.audit.record(
        patient_id=patient_id,
        action=action,
        basis=AccessBasis.CONVERSATION,
        establishment_id=establishment_id,
    )


@strawberry.type(name="Attachment", description="A file attached to a message.")
class Attachment(Node):
    pk: strawberry.Private[UUID]
    filename: str
    mime_type: str
    size: int
    sha256: str

    @strawberry.field(description="Where to download the bytes (same bearer token).")
    def content_url(self, info: Info) -> str:
        return f"{info.context.settings.public_url}/attachments/{self.id}/content"

    @classmethod
    def from_model(cls, row: AttachmentModel) -> Attachment:
        return cls(
            id=strawberry.ID(ids.encode("Attachment", row.id)),
            pk=row.id,
            filename=row.filename,
            mime_type=row.mime_type,
            size=row.size,
            sha256=row.sha256,
        )


@strawberry.type(name="Message", description="A message of a conversation.")
class Message(Node):
    pk: strawberry.Private[UUID]
    conversation_id: strawberry.Private[UUID]
    sender_role: strawberry.Private[SenderRole]
    sender_patient_id: strawberry.Private[UUID | None]
    sender_professional_id: strawberry.Private[UUID | None]
    on_behalf_of_id: strawberry.Private[UUID | None]
    body: str
    sent_at: datetime

    @strawberry.field(description="Who wrote it: the patient (or a representative) or the pro.")
    async def sender(self, info: Info) -> Sender | None:
        loaders = info.context.loaders
        if self.sender_professional_id is not None:
            pro = await loaders.professional.load(self.sender_professional_id)
            return Professional.from_model(pro) if pro else None
        if self.sender_patient_id is not None:
            patient = await loaders.patient.load(self.sender_patient_id)
            return Patient.from_model(patient) if patient else None
        return None

    @strawberry.field(description="The minor a legal representative wrote for.")
    async def on_behalf_of(self, info: Info) -> Patient | None:
        if self.on_behalf_of_id is None:
            return None
        row = await info.context.loaders.patient.load(self.on_behalf_of_id)
        return Patient.from_model(row) if row else None

    @strawberry.field(directives=[sized(messaging.MAX_ATTACHMENTS)])
    async def attachments(self, info: Info) -> list[Attachment]:
        rows = await info.context.loaders.attachments.load(self.pk)
        return [Attachment.from_model(row) for row in rows]

    @strawberry.field
    async def conversation(self, info: Info) -> Conversation | None:
        row = await info.context.loaders.conversation.load(self.conversation_id)
        return Conversation.from_model(row) if row else None

    @strawberry.field(
        description="When the other side read it; null while unread.",
        directives=[READS_DATABASE],
    )
    async def read_at(self, info: Info) -> datetime | None:
        marks = await info.context.loaders.read_marks.load(self.conversation_id)
        other = (
            SenderRole.PATIENT
            if self.sender_role is SenderRole.PROFESSIONAL
            else (SenderRole.PROFESSIONAL)
        )
        mark = marks.get(other)
        return mark if mark is not None and mark >= self.sent_at else None

    @classmethod
    def from_model(cls, row: MessageModel) -> Message:
        return cls(
            id=strawberry.ID(ids.encode("Message", row.id)),
            pk=row.id,
            conversation_id=row.conversation_id,
            sender_role=row.sender_role,
            sender_patient_id=row.sender_patient_id,
            sender_professional_id=row.sender_professional_id,
            on_behalf_of_id=row.on_behalf_of_id,
            body=row.body,
            sent_at=row.sent_at,
        )


@strawberry.type(name="MessageConnection")
class MessageConnection(Connection[Message]):
    pass


@strawberry.type(
    name="Conversation",
    description=(
        "A secure conversation of a patient with a professional, or with an establishment "
        "(its shared inbox: the patient sees the establishment, and who wrote each message)."
    ),
)
class Conversation(Node):
    pk: strawberry.Private[UUID]
    patient_id: strawberry.Private[UUID]
    professional_id: strawberry.Private[UUID]
    establishment_id: strawberry.Private[UUID | None]
    subject: str
    purpose: ConversationPurpose  # type: ignore[valid-type]
    closed: bool
    closed_at: datetime | None
    last_message_at: datetime
    created_at: datetime

    @strawberry.field
    async def patient(self, info: Info) -> Patient | None:
        row = await info.context.loaders.patient.load(self.patient_id)
        return Patient.from_model(row) if row else None

    @strawberry.field(
        description=("The professional who started it; for an establishment's, the member who did.")
    )
    async def professional(self, info: Info) -> Professional | None:
        row = await info.context.loaders.professional.load(self.professional_id)
        return Professional.from_model(row) if row else None

    @strawberry.field(
        description="The establishment whose shared inbox it belongs to; null for a professional's."
    )
    async def establishment(self, info: Info) -> Establishment | None:
        if self.establishment_id is None:
            return None
        row = await info.context.loaders.establishment.load(self.establishment_id)
        return Establishment.from_model(row) if row else None

    @strawberry.field(
        description="Oldest first; `after` takes a message cursor.",
        directives=[PAGE],
    )
    async def messages(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> MessageConnection:
        page = await paginate(
            MessageModel.filter(conversation_id=self.pk),
            MESSAGE_ORDER,
            first=first,
            after=after,
            wrap=Message.from_model,
            connection=MessageConnection,
        )
        await log_member_read(
            info,
            patient_id=self.patient_id,
            establishment_id=self.establishment_id,
            senders=(edge.node.sender_role for edge in page.edges),
        )
        return page

    @strawberry.field(
        description="Messages from the other side the viewer has not read.",
        directives=[READS_DATABASE],
    )
    async def unread_count(self, info: Info) -> int:
        side = messaging.viewer_side(info.context.actor)
        if side is None:
            return 0
        loaders = info.context.loaders
        if side is SenderRole.PROFESSIONAL and self.establishment_id is not None:
            mark = await loaders.member_read_marks.load(self.pk)  # each member's own
        else:
            mark = (await loaders.read_marks.load(self.pk)).get(side)
        query = MessageModel.filter(conversation_id=self.pk).exclude(sender_role=side)
        if mark is not None:
            query = query.filter(sent_at__gt=mark)
        return await query.count()

    @classmethod
    def from_model(cls, row: ConversationModel) -> Conversation:
        return cls(
            id=strawberry.ID(ids.encode("Conversation", row.id)),
            pk=row.id,
            patient_id=row.patient_id,
            professional_id=row.professional_id,
            establishment_id=row.establishment_id,
            subject=row.subject,
            purpose=row.purpose,
            closed=row.closed_at is not None,
            closed_at=row.closed_at,
            last_message_at=row.last_message_at,
            created_at=row.created_at,
        )


@strawberry.type(name="ConversationConnection")
class ConversationConnection(Connection[Conversation]):
    pass


# --- who sees what ----------------------------------------------------------------------


def managed_patients_query(actor: Actor, today: date, now: datetime) -> QuerySet[Any] | None:
    """The holder's own space and the minors they represent (patients only), as a query:
    live spaces only, a closed one's conversations being archived with it."""
    from models.access import live_managed_spaces
    from models.patient import Patient as PatientModel

    managed = live_managed_spaces(actor, today)
    return None if managed is None else PatientModel.filter(managed)


async def managed_patients(info: Info, actor: Actor) -> list[UUID]:
    """The holder's own space and the minors they represent (patients only)."""
    from models.access import live_managed_patient_ids

    return await live_managed_patient_ids(actor, info.context.today)


async def conversation_filter(info: Info) -> Q | None:
    actor = info.context.actor
    return messaging.visible_conversations(actor, await managed_patients(info, actor))


async def visible_conversation(info: Info, global_id: strawberry.ID) -> ConversationModel:
    pk = ids.decode_as(str(global_id), "Conversation")
    actor = info.context.actor
    row = await messaging.visible_conversation(actor, await managed_patients(info, actor), pk)
    if row is None:
        raise NotFound()
    return row


async def viewer_conversations(info: Info) -> QuerySet[ConversationModel]:
    """The conversations the viewer takes part in: every list goes through it."""
    where = await conversation_filter(info)
    return ConversationModel.filter(where if where is not None else Q(id__in=[]))


async def patient_conversations(
    info: Info, patient_pk: UUID, first: int | None, after: str | None
) -> ConversationConnection:
    return await paginate(
        (await viewer_conversations(info)).filter(patient_id=patient_pk),
        CONVERSATION_ORDER,
        first=first,
        after=after,
        wrap=Conversation.from_model,
        connection=ConversationConnection,
    )


async def professional_conversations(
    info: Info, professional_pk: UUID, first: int | None, after: str | None
) -> ConversationConnection:
    return await paginate(
        (await viewer_conversations(info)).filter(professional_id=professional_pk),
        CONVERSATION_ORDER,
        first=first,
        after=after,
        wrap=Conversation.from_model,
        connection=ConversationConnection,
    )


@register("Conversation")
async def _conversation_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    where = await conversation_filter(info)
    if where is None:
        return {}
    rows = await ConversationModel.filter(where, id__in=pks)
    return {row.id: Conversation.from_model(row) for row in rows}


@register("Message")
async def _message_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    where = await conversation_filter(info)
    if where is None:
        return {}
    visible = ConversationModel.filter(where).values("id")
    rows = await MessageModel.filter(
        id__in=pks, conversation_id__in=Subquery(visible)
    ).select_related("conversation")
    for row in rows:
        await log_member_read(
            info,
            patient_id=row.conversation.patient_id,
            establishment_id=row.conversation.establishment_id,
            senders=(row.sender_role,),
        )
    return {row.id: Message.from_model(row) for row in rows}


@register("Attachment")
async def _attachment_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    found = await visible_attachments(info, pks)
    for row in found.values():
        await log_member_read(
            info,
            patient_id=row.message.conversation.patient_id,
            establishment_id=row.message.conversation.establishment_id,
            senders=(row.message.sender_role,),
        )
    return {pk: Attachment.from_model(row) for pk, row in found.items()}


async def visible_attachments(info: Info, pks: list[UUID]) -> dict[UUID, AttachmentModel]:
    where = await conversation_filter(info)
    if where is None:
        return {}
    conversations = ConversationModel.filter(where).values("id")
    messages = MessageModel.filter(conversation_id__in=Subquery(conversations)).values("id")
    rows = await AttachmentModel.filter(
        id__in=pks, message_id__in=Subquery(messages)
    ).select_related("message__conversation")
    return {row.id: row for row in rows}


# --- mutations --------------------------------------------------------------------------


@strawberry.input
class StartConversationInput:
    patient_id: strawberry.ID
    subject: str
    body: str
    attachments: list[Upload] | None = None
    establishment_id: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "Start it in this establishment's shared inbox (the starter must be a member): "
            "its members all take part, and the patient sees the establishment."
        ),
    )
    purpose: ConversationPurpose = strawberry.field(  # type: ignore[valid-type]
        default=ConversationPurposeModel.CARE,
        description=(
            "CARE by default; ADMISSION, DISCHARGE or ADMINISTRATIVE for an establishment's "
            "paperwork (an entry into it, an exit from it, anything else)."
        ),
    )


@strawberry.type
class StartConversationPayload:
    conversation: Conversation
    message: Message


@strawberry.input
class SendMessageInput:
    conversation_id: strawberry.ID
    body: str
    attachments: list[Upload] | None = None


@strawberry.type
class SendMessagePayload:
    message: Message


@strawberry.input
class MarkConversationReadInput:
    conversation_id: strawberry.ID


@strawberry.type
class MarkConversationReadPayload:
    conversation: Conversation


@strawberry.input
class CloseConversationInput:
    conversation_id: strawberry.ID


@strawberry.type
class CloseConversationPayload:
    conversation: Conversation


@strawberry.input
class SaveAttachmentInput:
    attachment_id: strawberry.ID
    title: str
    category: DocumentCategory  # type: ignore[valid-type]


@strawberry.type
class SaveAttachmentPayload:
    document: Document


async def _uploads(info: Info, files: list[Upload] | None) -> list[messaging.Upload]:
    limit = info.context.settings.max_attachment_bytes
    out = []
    for index, file in enumerate(files or []):
        read = getattr(file, "read", None)
        if not callable(read):  # a JSON value where the multipart map should put a file
            raise BadUserInput(
                "Send attachments as multipart uploads.", field=f"attachments.{index}"
            )
        data = await read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(
                f"An attachment has {limit // (1024 * 1024)} MB at most.",
                field=f"attachments.{index}",
            )
        out.append(
            messaging.Upload(
                filename=getattr(file, "filename", None) or "piece-jointe",
                data=bytes(data),
                declared_mime=getattr(file, "content_type", None),
            )
        )
    return out


def _signed_in(info: Info) -> Actor:
    actor = info.context.actor
    if actor.anonymous:
        raise Unauthenticated()
    if not (actor.is_patient or actor.is_professional):
        raise Forbidden()
    return actor


async def _notify(info: Info, conversation: ConversationModel, message: MessageModel) -> None:
    accounts = await messaging.recipients(conversation, info.context.today)
    await publish_message(
        info.context.services.bus,
        accounts=accounts,
        message_id=message.id,
        conversation_id=conversation.id,
    )


@strawberry.type
class MessagingMutation:
    @strawberry.mutation(
        description="PROFESSIONAL: start a conversation with a patient (with a first message)."
    )
    async def start_conversation(
        self, info: Info, input: StartConversationInput
    ) -> StartConversationPayload:
        actor = _signed_in(info)
        if not actor.is_professional:
            raise Forbidden("Only professionals and establishments start a conversation.")
        ctx = info.context
        establishment_id = None
        if input.establishment_id is not None:
            establishment_id = ids.decode_as(str(input.establishment_id), "Establishment")
        conversation, message = await messaging.start_conversation(
            ids.decode_as(str(input.patient_id), "Patient"),
            establishment_id=establishment_id,
            purpose=ConversationPurposeModel(input.purpose),
            actor=actor,
            subject=input.subject,
            body=input.body,
            attachments=await _uploads(info, input.attachments),
            blobs=ctx.services.blobs,
            max_bytes=ctx.settings.max_attachment_bytes,
            now=ctx.now,
        )
        await _notify(info, conversation, message)
        return StartConversationPayload(
            conversation=Conversation.from_model(conversation), message=Message.from_model(message)
        )

    @strawberry.mutation(
        description="Post in a conversation you take part in; the patient replies only."
    )
    async def send_message(self, info: Info, input: SendMessageInput) -> SendMessagePayload:
        actor = _signed_in(info)
        ctx = info.context
        conversation = await visible_conversation(info, input.conversation_id)
        relation = (
            await ctx.loaders.relation.load(conversation.patient_id) if actor.is_patient else None
        )
        message = await messaging.send_message(
            conversation,
            actor=actor,
            relation=relation,
            body=input.body,
            attachments=await _uploads(info, input.attachments),
            blobs=ctx.services.blobs,
            max_bytes=ctx.settings.max_attachment_bytes,
            now=ctx.now,
        )
        await _notify(info, conversation, message)
        return SendMessagePayload(message=Message.from_model(message))

    @strawberry.mutation(
        description=(
            "Mark everything in the conversation read by your side (in an establishment's, "
            "by you: each member's unread messages are their own)."
        )
    )
    async def mark_conversation_read(
        self, info: Info, input: MarkConversationReadInput
    ) -> MarkConversationReadPayload:
        actor = _signed_in(info)
        conversation = await visible_conversation(info, input.conversation_id)
        await messaging.mark_read(conversation, actor=actor, now=info.context.now)
        return MarkConversationReadPayload(conversation=Conversation.from_model(conversation))

    @strawberry.mutation(
        description=(
            "PROFESSIONAL (any member, for an establishment's): close the conversation; no one "
            "can post after."
        )
    )
    async def close_conversation(
        self, info: Info, input: CloseConversationInput
    ) -> CloseConversationPayload:
        actor = _signed_in(info)
        conversation = await visible_conversation(info, input.conversation_id)
        await messaging.close_conversation(conversation, actor=actor, now=info.context.now)
        return CloseConversationPayload(conversation=Conversation.from_model(conversation))

    @strawberry.mutation(description="Save an attachment into the dossier with a title.")
    async def save_attachment(
        self, info: Info, input: SaveAttachmentInput
    ) -> SaveAttachmentPayload:
        actor = _signed_in(info)
        if not actor.is_patient:
            raise Forbidden("The patient saves attachments into their dossier.")
        ctx = info.context
        pk = ids.decode_as(str(input.attachment_id), "Attachment")
        found = await visible_attachments(info, [pk])
        if pk not in found:
            raise NotFound()
        attachment = found[pk]
        message = await MessageModel.get(id=attachment.message_id)
        conversation = await ConversationModel.get(id=message.conversation_id)
        relation = await ctx.loaders.relation.load(conversation.patient_id)
        if not relation.manages:
            raise NotFound()
        async with logged_write(info, relation) as write:
            row = await messaging.save_attachment(
                attachment,
                patient_id=conversation.patient_id,
                actor=actor,
                title=input.title,
                category=DocumentCategoryModel(input.category),
                today=ctx.today,
            )
            write.document_id = row.id
        return SaveAttachmentPayload(document=Document.from_model(row))
