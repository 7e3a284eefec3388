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
from models.document import Document as DocumentModel
from models.document import DocumentCategory as DocumentCategoryModel
from models.idempotency import Operation, Replay, created, once
from models.message import Attachment as AttachmentModel
from models.message import Conversation as ConversationModel
from models.message import ConversationPurpose as ConversationPurposeModel
from models.message import Message as MessageModel
from models.message import SenderRole
from resolvers import ids
from resolvers.audit import logged_write
from resolvers.cost import READS_DATABASE, sized
from resolvers.dossier import DOCUMENT_ORDER, Document, new_edge
from resolvers.enums import ConversationPurpose, DocumentCategory
from resolvers.idempotency import attachment_digests, key_field, keyed
from resolvers.node import Node, register
from resolvers.pagination import (
    PAGE,
    After,
    Before,
    Connection,
    Edge,
    First,
    Last,
    Order,
    after_filter,
    paginate,
)
from resolvers.people import Establishment, Patient, Professional
from resolvers.positions import decoded, position_cursor, position_of
from subscriptions.channels import publish_conversation, publish_message

# Messages are in commit order (their position, models/message.py `MessageClock`): a cursor
# is a position, which no message committed later can ever sort before.
MESSAGE_ORDER = Order((("seq", False),))


async def current_message_cursor(cursor: str | None, field: str = "after") -> str | None:
    """A message cursor as this version writes it. One handed out before messages had a
    position (their moment, then their id) stands for that message's position, or, if it
    is gone, for the last message of its moment or before."""
    if cursor is None:
        return None
    raw = decoded(cursor)
    if not (isinstance(raw, list) and len(raw) == 2):
        position_of(cursor, field)  # validated: a malformed one says so now
        return cursor
    legacy = Order((("sent_at", False), ("id", False)))
    up_to = ~after_filter(MessageModel, legacy, cursor)  # validates it, too
    last = await MessageModel.get_or_none(id=raw[1]) or (
        await MessageModel.filter(up_to, seq__not_isnull=True).order_by("-seq").first()
    )
    return position_cursor(last.seq if last is not None and last.seq is not None else 0)


CONVERSATION_ORDER = Order((("last_message_at", True), ("id", True)))

Sender = Annotated[
    Patient | Professional,
    strawberry.union(
        "MessageSender", description="Who wrote a message: the patient side or a professional."
    ),
]


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
    filename: str = strawberry.field(
        description="The file's name as sent, without any directory (200 characters at most)."
    )
    mime_type: str = strawberry.field(
        description=(
            "Its media type, sniffed from the bytes at upload (PDF, JPEG, PNG, TIFF, RTF or "
            "plain text), never taken from the client."
        )
    )
    size: int = strawberry.field(description="The size of its content, in bytes.")
    sha256: str = strawberry.field(
        description="The SHA-256 of its content: 64 lower-case hex digits."
    )

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
    body: str = strawberry.field(description="The text, as sent (trimmed).")
    sent_at: datetime = strawberry.field(description="When it was stored.")
    position: strawberry.Private[int | None]

    @strawberry.field(
        description=(
            "Where this message stands in commit order: the value `messages(after:)` and "
            "`messageReceived(after:)` accept (across conversations too), opaque. Resuming "
            "after it gets every message committed later, whichever worker stored it."
        )
    )
    def cursor(self) -> str:
        return position_cursor(self.position or 0)

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

    @strawberry.field(
        description=f"Its files, {messaging.MAX_ATTACHMENTS} at most, in the order sent.",
        directives=[sized(messaging.MAX_ATTACHMENTS)],
    )
    async def attachments(self, info: Info) -> list[Attachment]:
        rows = await info.context.loaders.attachments.load(self.pk)
        return [Attachment.from_model(row) for row in rows]

    @strawberry.field(description="The conversation it belongs to.")
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
        if mark is None or not mark.covers(self.position, self.sent_at):
            return None
        return mark.read_at

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
            position=row.seq,
        )


@strawberry.type(name="MessageConnection", description="A page of messages (a Relay connection).")
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
    subject: str = strawberry.field(description="Its subject, as given by who started it.")
    purpose: ConversationPurpose = strawberry.field(  # type: ignore[valid-type]
        description="Why it exists."
    )
    closed: bool = strawberry.field(description="Closed by the professional side: no one posts.")
    closed_at: datetime | None = strawberry.field(
        description="When it was closed; null while open."
    )
    last_message_at: datetime = strawberry.field(
        description="When its latest message was sent (the order of conversation lists)."
    )
    created_at: datetime = strawberry.field(description="When it was started.")

    @strawberry.field(description="The patient it is with.")
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
        description=(
            "Oldest first, in the order they were posted (committed); `after` and `before` "
            "take a message cursor. `last` reads from the newest."
        ),
        directives=[PAGE],
    )
    async def messages(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> MessageConnection:
        page = await paginate(
            MessageModel.filter(conversation_id=self.pk),
            MESSAGE_ORDER,
            first=first,
            after=await current_message_cursor(after),
            last=last,
            before=await current_message_cursor(before, "before"),
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
        description=(
            "The newest message, the one `messages(last: 1)` answers (read as `messages` "
            "is); null while there is none."
        )
    )
    async def last_message(self, info: Info) -> Message | None:
        row = await info.context.loaders.last_message.load(self.pk)
        if row is None:
            return None
        await log_member_read(
            info,
            patient_id=self.patient_id,
            establishment_id=self.establishment_id,
            senders=(row.sender_role,),
        )
        return Message.from_model(row)

    @strawberry.field(
        description="Messages from the other side the viewer has not read.",
        directives=[READS_DATABASE],
    )
    async def unread_count(self, info: Info) -> int:
        # Each member of an establishment has their own (models/message.py `UNREAD_BY`).
        return await info.context.loaders.unread_count.load(self.pk)

    @strawberry.field(
        description=(
            "Whether `sendMessage` is allowed to this viewer here now, by the rules it applies: "
            "the conversation is open, and the viewer is its patient side (the holder or a "
            "legal representative) or its professional side (any member, for an "
            "establishment's)."
        ),
        directives=[READS_DATABASE],
    )
    async def viewer_can_reply(self, info: Info) -> bool:
        actor = info.context.actor
        loaders = info.context.loaders
        row = await loaders.conversation.load(self.pk)
        if row is None or not (actor.is_patient or actor.is_professional):
            return False
        relation = await loaders.relation.load(row.patient_id) if actor.is_patient else None
        return messaging.may_post(actor, row, relation)

    @strawberry.field(
        description=(
            "Whether `closeConversation` is allowed to this viewer here, by the rule it "
            "applies: its professional side (any member, for an establishment's). Closing a "
            "closed one again is allowed and changes nothing."
        ),
        directives=[READS_DATABASE],
    )
    async def viewer_can_close(self, info: Info) -> bool:
        row = await info.context.loaders.conversation.load(self.pk)
        return row is not None and messaging.may_close(info.context.actor, row)

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


@strawberry.type(
    name="ConversationConnection", description="A page of conversations (a Relay connection)."
)
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


async def load_visible(info: Info, pk: UUID) -> ConversationModel | None:
    """The conversation `pk`, if the viewer may see it now: one statement (a patient's
    managed spaces are a subquery of it, not a query of their own)."""
    ctx = info.context
    actor = ctx.actor
    if actor.is_professional and actor.professional_id is not None:
        return await messaging.visible_conversation(actor, [], pk)
    managed = managed_patients_query(actor, ctx.today, ctx.now)
    if managed is None:
        return None
    return await messaging.visible_conversation(actor, Subquery(managed.values("id")), pk)


async def visible_conversation(info: Info, global_id: strawberry.ID) -> ConversationModel:
    row = await load_visible(info, ids.decode_as(str(global_id), "Conversation"))
    if row is None:
        raise NotFound()
    return row


async def unread_total(info: Info, patient_pk: UUID | None = None) -> int:
    """The messages the viewer has not read across their conversations (those of one space,
    with `patient_pk`): what each one's `unreadCount` counts, summed in one statement."""
    where = await conversation_filter(info)
    if where is None:
        return 0
    if patient_pk is not None:
        where &= Q(patient_id=patient_pk)
    return await messaging.unread_total(info.context.actor, where)


async def viewer_conversations(info: Info) -> QuerySet[ConversationModel]:
    """The conversations the viewer takes part in: every list goes through it."""
    where = await conversation_filter(info)
    return ConversationModel.filter(where if where is not None else Q(id__in=[]))


async def patient_conversations(
    info: Info,
    patient_pk: UUID,
    first: int | None,
    after: str | None,
    *,
    last: int | None = None,
    before: str | None = None,
) -> ConversationConnection:
    return await paginate(
        (await viewer_conversations(info)).filter(patient_id=patient_pk),
        CONVERSATION_ORDER,
        first=first,
        after=after,
        last=last,
        before=before,
        wrap=Conversation.from_model,
        connection=ConversationConnection,
    )


def in_state(
    info: Info,
    query: QuerySet[ConversationModel],
    *,
    unread: bool | None = None,
    open_: bool | None = None,
) -> QuerySet[ConversationModel]:
    """The dashboard's filters on a list of the viewer's conversations: `unread`, those with
    (true) or without (false) messages the viewer has not read, as `unreadCount` counts
    them; `open_`, those not closed (true) or closed (false). None: either."""
    if open_ is not None:
        query = query.filter(closed_at__isnull=open_)
    if unread is not None:
        where = messaging.unread_conversations(info.context.actor)
        if where is None:  # nobody else reads these lists: nothing unread for them
            return query.filter(id__in=[]) if unread else query
        query = query.filter(where) if unread else query.exclude(where)
    return query


async def professional_conversations(
    info: Info,
    professional_pk: UUID,
    first: int | None,
    after: str | None,
    *,
    unread: bool | None = None,
    open_: bool | None = None,
    last: int | None = None,
    before: str | None = None,
) -> ConversationConnection:
    query = (await viewer_conversations(info)).filter(professional_id=professional_pk)
    return await paginate(
        in_state(info, query, unread=unread, open_=open_),
        CONVERSATION_ORDER,
        first=first,
        after=after,
        last=last,
        before=before,
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
    patient_id: strawberry.ID = strawberry.field(description="The patient to write to.")
    subject: str = strawberry.field(
        description=f"1 to {messaging.MAX_SUBJECT} characters (spaces collapsed)."
    )
    body: str = strawberry.field(
        description=f"The text, 1 to {messaging.MAX_BODY:,} characters (trimmed)."
    )
    attachments: list[Upload] | None = strawberry.field(
        default=None,
        description=(
            f"Files (multipart upload), {messaging.MAX_ATTACHMENTS} at most: PDF, JPEG, PNG, "
            "TIFF, RTF or plain text, sniffed from the bytes; 5 MB each at most by default "
            "(MAX_ATTACHMENT_BYTES), PAYLOAD_TOO_LARGE beyond."
        ),
    )
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
    idempotency_key: str | None = key_field()


@strawberry.type
class StartConversationPayload:
    conversation: Conversation = strawberry.field(description="The conversation started.")
    message: Message = strawberry.field(description="Its first message.")


@strawberry.input
class SendMessageInput:
    conversation_id: strawberry.ID = strawberry.field(
        description="The conversation, open (CONFLICT once closed)."
    )
    body: str = strawberry.field(
        description=f"The text, 1 to {messaging.MAX_BODY:,} characters (trimmed)."
    )
    attachments: list[Upload] | None = strawberry.field(
        default=None,
        description=(
            f"Files (multipart upload), {messaging.MAX_ATTACHMENTS} at most: PDF, JPEG, PNG, "
            "TIFF, RTF or plain text, sniffed from the bytes; 5 MB each at most by default "
            "(MAX_ATTACHMENT_BYTES), PAYLOAD_TOO_LARGE beyond."
        ),
    )
    idempotency_key: str | None = key_field()


@strawberry.type
class SendMessagePayload:
    message: Message = strawberry.field(description="The message sent.")

    @strawberry.field(
        description=(
            "The new message as an edge of `Conversation.messages`, with the cursor that list "
            "gives it: a client's cache appends it there without reading the list again."
        )
    )
    async def message_edge(self) -> Edge[Message]:
        return await new_edge(MessageModel, self.message.pk, MESSAGE_ORDER, self.message)


@strawberry.input
class MarkConversationReadInput:
    conversation_id: strawberry.ID = strawberry.field(description="The conversation.")


@strawberry.type
class MarkConversationReadPayload:
    conversation: Conversation = strawberry.field(
        description="The conversation, its `unreadCount` now 0 for the viewer."
    )


@strawberry.input
class CloseConversationInput:
    conversation_id: strawberry.ID = strawberry.field(description="The conversation to close.")


@strawberry.type
class CloseConversationPayload:
    conversation: Conversation = strawberry.field(description="The conversation, closed.")


@strawberry.input
class SaveAttachmentInput:
    attachment_id: strawberry.ID = strawberry.field(
        description="The attachment, of a message of the patient's conversations."
    )
    title: str = strawberry.field(
        description="The document's title, 1 to 200 characters (spaces collapsed)."
    )
    category: DocumentCategory = strawberry.field(  # type: ignore[valid-type]
        description="The document's category."
    )


@strawberry.type
class SaveAttachmentPayload:
    document: Document = strawberry.field(description="The document added to the dossier.")

    @strawberry.field(
        description=(
            "The new document as an edge of `Patient.documents`, with the cursor that list "
            "gives it: a client's cache inserts it there without reading the list again."
        )
    )
    async def document_edge(self) -> Edge[Document]:
        return await new_edge(DocumentModel, self.document.pk, DOCUMENT_ORDER, self.document)


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


async def _notify(
    info: Info, conversation: ConversationModel, message: MessageModel, accounts: list[UUID]
) -> None:
    """After the commit of a new message: its `message` event to `accounts` (its recipients)."""
    await publish_message(
        info.context.services.bus,
        accounts=accounts,
        message_id=message.id,
        conversation_id=conversation.id,
        position=message.seq,
    )


async def _notify_changed(info: Info, conversation: ConversationModel) -> None:
    """After the commit of a read or a close: conversationUpdated pushes it to every
    participant (a new message's `message` event serves it too: `_notify`)."""
    accounts = await messaging.recipients(conversation, info.context.today)
    await publish_conversation(
        info.context.services.bus, accounts=accounts, conversation_id=conversation.id
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
        patient_pk = ids.decode_as(str(input.patient_id), "Patient")
        purpose = ConversationPurposeModel(input.purpose)
        uploads = await _uploads(info, input.attachments)
        attempt = keyed(
            info,
            Operation.START_CONVERSATION,
            input.idempotency_key,
            patient=patient_pk,
            establishment=establishment_id,
            purpose=purpose,
            subject=input.subject,
            body=input.body,
            attachments=attachment_digests(uploads),
        )

        async def replay(earlier: Replay) -> tuple[ConversationModel, MessageModel]:
            await messaging.check_start(patient_pk, actor=actor, establishment_id=establishment_id)
            started = await created(ConversationModel, earlier.object_id, patient_id=patient_pk)
            first = await created(MessageModel, earlier.second_id, conversation_id=started.id)
            return started, first

        (conversation, message), fresh = await once(
            attempt,
            lambda: messaging.start_conversation(
                patient_pk,
                establishment_id=establishment_id,
                purpose=purpose,
                actor=actor,
                subject=input.subject,
                body=input.body,
                attachments=uploads,
                blobs=ctx.services.blobs,
                max_bytes=ctx.settings.max_attachment_bytes,
                now=ctx.now,
                claim=attempt,
            ),
            replay,
        )
        if fresh:
            accounts = await messaging.recipients(conversation, ctx.today)
            await _notify(info, conversation, message, accounts)
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
        uploads = await _uploads(info, input.attachments)
        attempt = keyed(
            info,
            Operation.SEND_MESSAGE,
            input.idempotency_key,
            conversation=conversation.id,
            body=input.body,
            attachments=attachment_digests(uploads),
        )

        async def replay(earlier: Replay) -> MessageModel:
            # Taking part in the conversation now (`visible_conversation`) is what posting in
            # it takes: the replay answers its message, even once the conversation is closed.
            return await created(MessageModel, earlier.object_id, conversation_id=conversation.id)

        # Whom to notify, read with the message's commit (one call to the database).
        addressees = messaging.recipients_read(conversation)
        message, fresh = await once(
            attempt,
            lambda: messaging.send_message(
                conversation,
                actor=actor,
                relation=relation,
                body=input.body,
                attachments=uploads,
                blobs=ctx.services.blobs,
                max_bytes=ctx.settings.max_attachment_bytes,
                now=ctx.now,
                claim=attempt,
                then=addressees,
            ),
            replay,
        )
        if fresh:
            accounts = await messaging.addressed(conversation, addressees.rows, ctx.today)
            await _notify(info, conversation, message, accounts)
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
        await _notify_changed(info, conversation)
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
        was_open = conversation.closed_at is None
        await messaging.close_conversation(conversation, actor=actor, now=info.context.now)
        if was_open:
            await _notify_changed(info, conversation)
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
