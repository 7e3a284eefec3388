"""Messagerie santé: conversations started by professionals, messages, attachments, reads.

A conversation is a professional's, or an establishment's (its shared inbox: every member
reads, answers, marks read and closes it; the member who started it keeps it only while a
member). A message is committed before anyone is notified; notifications carry ids only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pypika_tortoise.context import SqlContext
from pypika_tortoise.terms import Term
from pypika_tortoise.utils import format_alias_sql
from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from models import clock
from models.access import (
    LIVE_SPACES,
    MEMBER_OF,
    Actor,
    PatientIds,
    Relation,
    is_member,
    member_establishments,
)
from models.account import Account
from models.audience import notified, notified_query
from models.base import Entity, parameter_prefix
from models.blobs import BlobStore, validate_upload
from models.consent import Block
from models.document import (
    Document,
    DocumentCategory,
    clean_title,
    ensure_bytes,
    release_blob,
    store_bytes,
)
from models.errors import Conflict, Forbidden, Invalid, NotFound
from models.establishment import EstablishmentMember
from models.idempotency import Claim
from models.patient import Patient, SpaceStatus
from models.professional import Establishment, Professional
from models.sqlite_thread import select_rows

MAX_BODY = 10_000
MAX_SUBJECT = 200
MAX_ATTACHMENTS = 10


class SenderRole(StrEnum):
    PATIENT = "PATIENT"
    PROFESSIONAL = "PROFESSIONAL"


class ConversationPurpose(StrEnum):
    """Why the conversation exists: care, or an establishment's paperwork to prepare an
    entry into (ADMISSION) or an exit from (DISCHARGE) it, or anything administrative."""

    CARE = "CARE"
    ADMISSION = "ADMISSION"
    DISCHARGE = "DISCHARGE"
    ADMINISTRATIVE = "ADMINISTRATIVE"


class Conversation(Entity):
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="conversations", on_delete=fields.CASCADE
    )
    # Who started it: for an establishment's conversation, the member who did.
    professional: fields.ForeignKeyRelation[Professional] = fields.ForeignKeyField(
        "models.Professional", related_name="conversations", on_delete=fields.CASCADE
    )
    # Set: the conversation belongs to the establishment's shared inbox, its members'.
    establishment: fields.ForeignKeyNullableRelation[Establishment] = fields.ForeignKeyField(
        "models.Establishment",
        related_name="conversations",
        null=True,
        on_delete=fields.RESTRICT,
    )
    purpose = fields.CharEnumField(
        ConversationPurpose, max_length=16, default=ConversationPurpose.CARE
    )
    subject = fields.CharField(max_length=MAX_SUBJECT)
    closed_at = fields.DatetimeField(null=True)
    last_message_at = fields.DatetimeField()
    patient_id: UUID
    professional_id: UUID
    establishment_id: UUID | None

    class Meta:
        table = "conversation"
        indexes = (
            ("professional_id", "last_message_at"),
            ("patient_id", "last_message_at"),
            ("establishment_id", "last_message_at"),
        )


class Message(Entity):
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="messages", on_delete=fields.CASCADE
    )
    sender_role = fields.CharEnumField(SenderRole, max_length=16)
    sender_patient: fields.ForeignKeyNullableRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="sent_messages", null=True, on_delete=fields.SET_NULL
    )
    sender_professional: fields.ForeignKeyNullableRelation[Professional] = fields.ForeignKeyField(
        "models.Professional", related_name="sent_messages", null=True, on_delete=fields.SET_NULL
    )
    on_behalf_of: fields.ForeignKeyNullableRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="messages_on_behalf", null=True, on_delete=fields.SET_NULL
    )
    body = fields.TextField()
    sent_at = fields.DatetimeField()
    # The message's place in commit order (models/clock.py): what its cursor encodes. Set
    # for every message (the migration numbered those before it); nullable only so that
    # SQLite never rebuilds the table for it (a rebuild drops the table's indexes).
    seq = fields.BigIntField(null=True, unique=True)
    conversation_id: UUID
    sender_patient_id: UUID | None
    sender_professional_id: UUID | None
    on_behalf_of_id: UUID | None

    class Meta:
        table = "message"
        indexes = (("conversation_id", "sent_at"), ("conversation_id", "seq"))


async def next_position(conn: BaseDBAsyncClient) -> int:
    """The next message position (`Message.seq`), in commit order (models/clock.py): taken
    last in the sending transaction, just before the insert that uses it."""
    return await clock.next_position(conn, clock.MESSAGES)


async def committed_position() -> int:
    """Every message at or below it is visible now (or was rolled back): a subscriber
    starting now replays from it, and misses nothing."""
    return await clock.committed_position(clock.MESSAGES)


class Attachment(Entity):
    message: fields.ForeignKeyRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name="attachments", on_delete=fields.CASCADE
    )
    filename = fields.CharField(max_length=200)
    mime_type = fields.CharField(max_length=64)
    size = fields.IntField()
    sha256 = fields.CharField(max_length=64, db_index=True)
    message_id: UUID

    class Meta:
        table = "attachment"


class ReadMark(Entity):
    """Read receipts: how far each side of a conversation has read.

    An establishment's side has read as far as the member who read last (`MemberReadMark`).
    """

    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="read_marks", on_delete=fields.CASCADE
    )
    side = fields.CharEnumField(SenderRole, max_length=16)
    read_at = fields.DatetimeField()
    # Read up to this message position (commit order, models/clock.py): what was committed
    # when the mark was set. A message committed later is unread, whatever its `sent_at`
    # (taken when its request started, possibly before the mark). Null for a mark set before
    # positions existed: `read_at` then compares with `sent_at`, as it did.
    read_seq = fields.BigIntField(null=True)
    conversation_id: UUID

    class Meta:
        table = "read_mark"
        unique_together = (("conversation", "side"),)

    def covers(self, position: int | None, sent_at: datetime) -> bool:
        """Whether this mark reads a message (`UNREAD_BY` decides the same in SQL)."""
        return covers(self.read_seq, self.read_at, position, sent_at)


def covers(
    read_seq: int | None, read_at: datetime, position: int | None, sent_at: datetime
) -> bool:
    if read_seq is not None and position is not None:
        return read_seq >= position
    return read_at >= sent_at


class MemberReadMark(Entity):
    """How far each member of an establishment has read one of its conversations.

    What each member has not read yet is their own (`unreadCount`)."""

    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="member_read_marks", on_delete=fields.CASCADE
    )
    professional: fields.ForeignKeyRelation[Professional] = fields.ForeignKeyField(
        "models.Professional", related_name="member_read_marks", on_delete=fields.CASCADE
    )
    read_at = fields.DatetimeField()
    read_seq = fields.BigIntField(null=True)  # as `ReadMark.read_seq`
    conversation_id: UUID
    professional_id: UUID

    class Meta:
        table = "member_read_mark"
        unique_together = (("conversation", "professional"),)


# --- who sees what ----------------------------------------------------------------------


def taking_part(professional_id: UUID) -> Q:
    """Filter on Conversation: the professional's own (not an establishment's), and those of
    the establishments whose inbox they are a member of (models/access.py's TAKES_PART)."""
    return Q(professional_id=professional_id, establishment_id=None) | Q(
        establishment_id__in=member_establishments(professional_id)
    )


def open_conversation_patients(professional_id: UUID) -> Q:
    """Filter on Patient: patients with an open conversation the professional takes part in."""
    return Q(
        id__in=Subquery(
            Conversation.filter(taking_part(professional_id), closed_at=None).values("patient_id")
        )
    )


def visible_conversations(actor: Actor, managed_patients: list[UUID] | Subquery) -> Q | None:
    """Filter on Conversation: a professional's own and their establishments' (`taking_part`),
    or those of the spaces a patient manages (their ids, or a subquery of them).

    As for every other view of a space, a block (which wins over everything) or a space
    that is no longer live (closed, opposed) cuts the professional off its conversations:
    no reading, posting, downloading or live delivery, and so no identity either.
    """
    if actor.is_professional and actor.professional_id is not None:
        pid = actor.professional_id
        blocked = Block.filter(professional_id=pid).values("patient_id")
        return (
            taking_part(pid)
            & Q(patient__status__in=list(LIVE_SPACES))
            & ~Q(patient_id__in=Subquery(blocked))
        )
    if actor.is_patient and managed_patients:
        return Q(patient_id__in=managed_patients)
    return None


# `visible_conversations` for a professional, with the conversation's id, hand-written because
# every message a professional sends runs it (the ORM took longer to build it than the
# database to run it). Exactly the same conditions: the professional's own or their
# establishments' ({p}2, models/access.py's TAKES_PART), its patient's space live, the
# patient not blocking the professional. {p}1 the conversation.
_PROFESSIONAL_CONVERSATION = (  # noqa: S608 (constants only)
    "SELECT c.* FROM conversation c JOIN patient p ON p.id = c.patient_id"
    " WHERE c.id = {{p}}1 AND ((c.professional_id = {{p}}2 AND c.establishment_id IS NULL)"
    " OR c.establishment_id IN ({member_of})) AND p.status IN ({live})"
    " AND c.patient_id NOT IN (SELECT patient_id FROM block WHERE professional_id = {{p}}2)"
).format(
    member_of=MEMBER_OF.replace("{pro}", "{p}2"),
    live=", ".join(f"'{status.value}'" for status in LIVE_SPACES),
)


async def visible_conversation(
    actor: Actor, managed_patients: list[UUID] | Subquery, pk: UUID
) -> Conversation | None:
    """One conversation, if `visible_conversations(actor, managed_patients)` lets it through."""
    if actor.is_professional and actor.professional_id is not None:
        db = Conversation._meta.db
        sql = _PROFESSIONAL_CONVERSATION.format(p=parameter_prefix(db))
        rows = await select_rows(db, sql, [str(pk), str(actor.professional_id)])
        return Conversation._init_from_db(**dict(rows[0])) if rows else None
    where = visible_conversations(actor, managed_patients)
    return await Conversation.filter(where, id=pk).first() if where is not None else None


def viewer_side(actor: Actor) -> SenderRole | None:
    if actor.is_professional:
        return SenderRole.PROFESSIONAL
    if actor.is_patient:
        return SenderRole.PATIENT
    return None


def member_read(actor: Actor, establishment_id: UUID | None, sender_role: SenderRole) -> bool:
    """Whether the actor, reading a message written by `sender_role` in a conversation of
    `establishment_id` (visible to them, so a member), is a member of an establishment
    reading a patient's message of its shared inbox: an access event, basis CONVERSATION,
    naming the member and the establishment. (A professional's own conversation is read by
    the one the patient wrote to: no event, as before establishments.)"""
    return (
        actor.is_professional and establishment_id is not None and sender_role is SenderRole.PATIENT
    )


# The conversations holding a message the viewer has not read (`UNREAD_BY` below), as ids:
# correlated with the query's own `conversation` row, as `unread_count` is.
_HAS_UNREAD = (
    "SELECT m.conversation_id FROM message m WHERE m.conversation_id = conversation.id AND {unread}"
)


def unread_conversations(actor: Actor) -> Q | None:
    """Filter on Conversation: those with messages the viewer has not read (`unreadCount`
    above zero: the same `UNREAD_BY`); None for anyone but a patient or a professional."""
    side = viewer_side(actor)
    if side is None:
        return None
    sql = _HAS_UNREAD.replace("{unread}", UNREAD_BY[side])
    return Q(id__in=PatientIds(sql, pro=str(actor.professional_id)))


# A message `m` of the conversation `conversation` that the viewer has not read: from the
# other side, and past the viewer's read mark. The patient side's is the side's `ReadMark`;
# the professional side's, in a professional's own conversation, the side's `ReadMark`, in an
# establishment's, the member's own `MemberReadMark` ({pro}): each member's unread messages
# are their own. The one definition of "unread": `Conversation.unreadCount` and the unread
# totals of `Patient` and `Professional` all count it (`unread_count`).
# `covers` in SQL: a mark `r` reads a message `m` by position, or, for a mark set before
# positions existed, by moment.
_COVERS = (
    "(CASE WHEN r.read_seq IS NOT NULL AND m.seq IS NOT NULL THEN r.read_seq >= m.seq"
    " ELSE r.read_at >= m.sent_at END)"
)
UNREAD_BY = {
    SenderRole.PATIENT: (
        "m.sender_role <> 'PATIENT' AND NOT EXISTS (SELECT 1 FROM read_mark r"  # noqa: S608
        " WHERE r.conversation_id = m.conversation_id AND r.side = 'PATIENT'"
        f" AND {_COVERS})"
    ),
    SenderRole.PROFESSIONAL: (
        "m.sender_role <> 'PROFESSIONAL' AND NOT EXISTS (SELECT 1 FROM read_mark r"  # noqa: S608
        " WHERE conversation.establishment_id IS NULL AND r.conversation_id = m.conversation_id"
        f" AND r.side = 'PROFESSIONAL' AND {_COVERS}) AND NOT EXISTS (SELECT 1"
        " FROM member_read_mark r WHERE conversation.establishment_id IS NOT NULL"
        " AND r.conversation_id = m.conversation_id AND r.professional_id = {pro}"
        f" AND {_COVERS})"
    ),
}
_UNREAD_COUNT = (
    "SELECT COUNT(*) FROM message m WHERE m.conversation_id = conversation.id AND {unread}"
)


class _Scalar(PatientIds):
    """Hand-written SQL of one value per row (a correlated subquery), its parameters
    numbered as the query's dialect wants, selected under its annotation's name."""

    def get_sql(self, ctx: SqlContext) -> str:
        sql = super().get_sql(ctx)
        return format_alias_sql(sql, self.alias, ctx) if ctx.with_alias else sql


def unread_count(actor: Actor) -> Term | None:
    """For each row of a Conversation query (`annotate` it): how many of its messages the
    viewer has not read (`UNREAD_BY`); None for anyone but a patient or a professional."""
    side = viewer_side(actor)
    if side is None:
        return None
    sql = _UNREAD_COUNT.replace("{unread}", UNREAD_BY[side])
    return _Scalar(sql, pro=str(actor.professional_id))


async def unread_counts(actor: Actor, conversation_ids: list[UUID]) -> dict[UUID, int]:
    """`unread_count` of each of these conversations (visible to the actor: the caller's
    business), in one statement."""
    term = unread_count(actor)
    if term is None or not conversation_ids:
        return {}
    rows = await (
        Conversation.filter(id__in=conversation_ids)
        .annotate(unread=term)
        .values_list("id", "unread")
    )
    return {UUID(str(pk)): int(count) for pk, count in rows}


async def unread_total(actor: Actor, conversations: Q) -> int:
    """The messages the actor has not read across these conversations (a filter on
    Conversation: the caller's visible ones), in one statement."""
    term = unread_count(actor)
    if term is None:
        return 0
    counts: list[Any] = (
        await Conversation.filter(conversations)
        .annotate(unread=term)
        .values_list("unread", flat=True)
    )
    return sum(int(count) for count in counts)


# --- operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes
    declared_mime: str | None


def _clean_body(body: str) -> str:
    text = body.strip()
    if not text or len(text) > MAX_BODY:
        raise Invalid(f"A message has 1 to {MAX_BODY} characters.", field="body")
    return text


def _clean_filename(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip() or "piece-jointe"
    return base[:200]


async def _store_attachments(
    uploads: list[Upload], *, blobs: BlobStore, max_bytes: int
) -> list[tuple[Upload, str, str, bool]]:
    if len(uploads) > MAX_ATTACHMENTS:
        raise Invalid(f"At most {MAX_ATTACHMENTS} attachments.", field="attachments")
    checked = []
    for index, upload in enumerate(uploads):
        mime = validate_upload(
            upload.data,
            declared_mime=upload.declared_mime,
            max_bytes=max_bytes,
            field=f"attachments.{index}",
        )
        checked.append((upload, mime))
    stored = []
    for upload, mime in checked:
        sha, created = await store_bytes(blobs, upload.data)
        stored.append((upload, mime, sha, created))
    return stored


async def _release(blobs: BlobStore, stored: list[tuple[Upload, str, str, bool]]) -> None:
    for _, _, sha, created in stored:
        if created:
            await release_blob(blobs, sha)


def _posting(
    conversation_id: UUID,
    *,
    actor: Actor,
    body: str,
    on_behalf_of: UUID | None,
    stored: list[tuple[Upload, str, str, bool]],
    now: datetime,
    db: BaseDBAsyncClient,
) -> tuple[Message, list[clock.Write]]:
    """A new message and its attachments, and the writes that store them at the
    transaction's position (models/clock.py `positioned`)."""
    message = Message(
        conversation_id=conversation_id,
        sender_role=viewer_side(actor),
        sender_patient_id=actor.patient_id if actor.is_patient else None,
        sender_professional_id=actor.professional_id if actor.is_professional else None,
        on_behalf_of_id=on_behalf_of,
        body=body,
        sent_at=now,
    )
    writes = [clock.inserting(message, db, position="seq")]
    for upload, mime, sha, _ in stored:
        attachment = Attachment(
            message_id=message.id,
            filename=_clean_filename(upload.filename),
            mime_type=mime,
            size=len(upload.data),
            sha256=sha,
        )
        writes.append(clock.inserting(attachment, db))
    return message, writes


# Every message sent runs this, hand-written: what was
# `Conversation.filter(id=…, closed_at=None).exists()` then
# `Conversation.filter(id=…).update(last_message_at=now)`, in one statement. First in the
# transaction: on PostgreSQL the UPDATE also locks the row against a concurrent close until
# the commit. {p}1 the moment, {p}2 the conversation.
_BUMP_OPEN = "UPDATE conversation SET last_message_at = {p}1 WHERE id = {p}2 AND closed_at IS NULL"


def _bumping_open(db: BaseDBAsyncClient, conversation_id: UUID, now: datetime) -> clock.Write:
    """Move the conversation's `last_message_at` to `now`; changing no row if it is closed."""
    field = Conversation._meta.fields_map["last_message_at"]
    sql = _BUMP_OPEN.format(p=parameter_prefix(db))
    params = [field.to_db_value(now, Conversation), str(conversation_id)]
    return clock.Write(sql, params, required=True)


def may_start_conversation(actor: Actor, status: SpaceStatus, *, blocked: bool) -> bool:
    """`start_conversation`'s rule for one space (its status, and whether it blocks the
    actor): a professional, with an active space that does not block them. An
    establishment's inbox also needs its starter to be a member."""
    return (
        actor.is_professional
        and actor.professional_id is not None
        and status is SpaceStatus.ACTIVE
        and not blocked
    )


async def start_conversation(
    patient_id: UUID,
    *,
    actor: Actor,
    subject: str,
    body: str,
    attachments: list[Upload],
    blobs: BlobStore,
    max_bytes: int,
    now: datetime,
    establishment_id: UUID | None = None,
    purpose: ConversationPurpose = ConversationPurpose.CARE,
    claim: Claim | None = None,
) -> tuple[Conversation, Message]:
    """A professional's conversation, or, with `establishment_id`, one of that establishment's
    shared inbox, which only a member starts. `claim`: the idempotency key it records."""
    await check_start(patient_id, actor=actor, establishment_id=establishment_id)
    clean_subject = " ".join(subject.split())
    if not clean_subject or len(clean_subject) > MAX_SUBJECT:
        raise Invalid(f"A subject has 1 to {MAX_SUBJECT} characters.", field="subject")
    text = _clean_body(body)
    stored = await _store_attachments(attachments, blobs=blobs, max_bytes=max_bytes)
    try:
        db = Conversation._meta.db
        conversation = Conversation(
            patient_id=patient_id,
            professional_id=actor.professional_id,
            establishment_id=establishment_id,
            purpose=purpose,
            subject=clean_subject,
            last_message_at=now,
        )
        message, writes = _posting(
            conversation.id,
            actor=actor,
            body=text,
            on_behalf_of=None,
            stored=stored,
            now=now,
            db=db,
        )
        if claim is not None:  # after the message: see models/idempotency.py
            writes.append(clock.inserting(claim.row(conversation.id, message.id), db))
        position = await clock.positioned(
            clock.MESSAGES, [clock.inserting(conversation, db)], writes
        )
        assert position is not None  # no write of it is required
        message.seq = position
    except BaseException:
        await _release(blobs, stored)
        raise
    await _restore(blobs, stored)
    return conversation, message


async def check_start(patient_id: UUID, *, actor: Actor, establishment_id: UUID | None) -> None:
    """Whether the actor may start a conversation with the patient now (in the establishment's
    inbox, with `establishment_id`): a replayed start (models/idempotency.py) is held to it too."""
    if not actor.is_professional or actor.professional_id is None:
        raise Forbidden("Only professionals and establishments start a conversation.")
    if establishment_id is not None and not await is_member(actor, establishment_id):
        if not await Establishment.exists(id=establishment_id):
            raise NotFound()
        raise Forbidden("Only a member of the establishment starts its conversations.")
    patient = await Patient.get_or_none(id=patient_id)
    blocked = await Block.exists(patient_id=patient_id, professional_id=actor.professional_id)
    if patient is None or not may_start_conversation(actor, patient.status, blocked=blocked):
        raise NotFound()


async def _restore(blobs: BlobStore, stored: list[tuple[Upload, str, str, bool]]) -> None:
    for upload, _, sha, _ in stored:
        await ensure_bytes(blobs, sha, upload.data)


async def send_message(
    conversation: Conversation,
    *,
    actor: Actor,
    relation: Relation | None,
    body: str,
    attachments: list[Upload],
    blobs: BlobStore,
    max_bytes: int,
    now: datetime,
    claim: Claim | None = None,
    then: clock.Read | None = None,
) -> Message:
    """Post in a conversation the actor takes part in (visibility checked by the caller: for
    an establishment's conversation, membership). `claim`: the idempotency key it records;
    `then`: read once the message is committed (`recipients_read`), its rows left there."""
    if conversation.closed_at is not None:
        raise Conflict("This conversation is closed: no one can post in it.")
    if not may_post(actor, conversation, relation):
        raise Forbidden()
    on_behalf_of = None
    if actor.is_patient and relation is not None and relation.representative:
        on_behalf_of = conversation.patient_id
    text = _clean_body(body)
    stored = await _store_attachments(attachments, blobs=blobs, max_bytes=max_bytes)
    try:
        db = Message._meta.db
        message, writes = _posting(
            conversation.id,
            actor=actor,
            body=text,
            on_behalf_of=on_behalf_of,
            stored=stored,
            now=now,
            db=db,
        )
        if claim is not None:  # after the message: see models/idempotency.py
            writes.append(clock.inserting(claim.row(message.id), db))
        position = await clock.positioned(
            clock.MESSAGES, [_bumping_open(db, conversation.id, now)], writes, then, db=db
        )
        if position is None:
            raise Conflict("This conversation is closed: no one can post in it.")
        message.seq = position
    except BaseException:
        await _release(blobs, stored)
        raise
    await _restore(blobs, stored)
    return message


def _professional_side(actor: Actor, conversation: Conversation) -> bool:
    """The actor writes as the professional side: its professional, or, for an
    establishment's conversation, a professional the caller found it visible to (a member)."""
    if not actor.is_professional or actor.professional_id is None:
        return False
    return (
        conversation.establishment_id is not None
        or actor.professional_id == conversation.professional_id
    )


async def mark_read(conversation: Conversation, *, actor: Actor, now: datetime) -> None:
    """Everything read so far by the actor's side; in an establishment's conversation, by
    the member too (each member's unread messages are their own)."""
    side = viewer_side(actor)
    if side is None:
        raise Forbidden()
    # Up to what has committed now: a message committing later stays unread.
    mark = {"read_at": now, "read_seq": await committed_position()}
    if conversation.establishment_id is None or actor.professional_id is None:
        await _mark_side(conversation, side, mark)
        return
    async with in_transaction():  # the member's mark and the establishment's side's together
        await _mark_side(conversation, side, mark)
        mine = MemberReadMark.filter(
            conversation_id=conversation.id, professional_id=actor.professional_id
        )
        if not await mine.update(**mark):
            await MemberReadMark.get_or_create(
                conversation_id=conversation.id,
                professional_id=actor.professional_id,
                defaults=mark,
            )


async def _mark_side(conversation: Conversation, side: SenderRole, mark: dict[str, Any]) -> None:
    updated = await ReadMark.filter(conversation_id=conversation.id, side=side).update(**mark)
    if not updated:
        await ReadMark.get_or_create(conversation_id=conversation.id, side=side, defaults=mark)


def may_post(actor: Actor, conversation: Conversation, relation: Relation | None) -> bool:
    """`send_message`'s rule, for a conversation visible to the actor: an open one, and the
    patient side (its holder or a representative: `relation`) or the professional side."""
    if conversation.closed_at is not None:
        return False
    if actor.is_patient:
        return relation is not None and relation.manages
    return _professional_side(actor, conversation)


def may_close(actor: Actor, conversation: Conversation) -> bool:
    """`close_conversation`'s rule, for a conversation visible to the actor: the
    professional side (any member, for an establishment's). Closing a closed one again
    changes nothing."""
    return _professional_side(actor, conversation)


async def close_conversation(conversation: Conversation, *, actor: Actor, now: datetime) -> None:
    if not may_close(actor, conversation):
        raise Forbidden("Only the professional of the conversation closes it.")
    if conversation.closed_at is None:
        await Conversation.filter(id=conversation.id, closed_at=None).update(closed_at=now)
        conversation.closed_at = now


def recipients_read(conversation: Conversation) -> clock.Read:
    """`recipients`' first statement, for a caller that has it run with its transaction
    (`send_message`'s `then`): the patient side's accounts, and the professional's for a
    professional's own conversation. `addressed` then reads its rows."""
    pro = conversation.professional_id if conversation.establishment_id is None else None
    sql, params = notified_query(conversation.patient_id, pro)
    return clock.Read(sql, params)


async def addressed(
    conversation: Conversation, rows: list[dict[str, Any]], today: date
) -> list[UUID]:
    """The accounts to notify, from `recipients_read`'s rows: for an establishment's
    conversation, with every member's."""
    accounts = notified(rows, today)
    if conversation.establishment_id is None:
        return accounts
    members = await Account.filter(
        professional_id__in=Subquery(
            EstablishmentMember.filter(establishment_id=conversation.establishment_id).values(
                "professional_id"
            )
        )
    ).values_list("id", flat=True)
    return [*accounts, *(UUID(str(pk)) for pk in members)]


async def recipients(conversation: Conversation, today: date | None = None) -> list[UUID]:
    """Accounts to notify: the professional (every member of an establishment's), the
    patient, their current representatives. Each delivery is re-authorised anyway."""
    from models.base import paris_today

    read = recipients_read(conversation)
    db = Conversation._meta.db
    rows = await db.execute_query_dict(read.sql_for(db), read.params)
    return await addressed(conversation, rows, today or paris_today())


async def save_attachment(
    attachment: Attachment,
    *,
    patient_id: UUID,
    actor: Actor,
    title: str,
    category: DocumentCategory,
    today: date,
) -> Document:
    """Copy an attachment into the dossier: a new row on the same bytes."""
    return await Document.create(
        patient_id=patient_id,
        title=clean_title(title),
        category=category,
        date=today,
        mime_type=attachment.mime_type,
        size=attachment.size,
        sha256=attachment.sha256,
        author_patient_id=actor.patient_id,
    )


async def readable_attachment(actor: Actor, pk: UUID, *, today: date) -> Attachment | None:
    """An attachment of a conversation the actor takes part in (downloads), with its message
    and the message's conversation."""
    from models.access import live_managed_patient_ids

    where = visible_conversations(actor, await live_managed_patient_ids(actor, today))
    if where is None:
        return None
    conversations = Conversation.filter(where).values("id")
    messages = Message.filter(conversation_id__in=Subquery(conversations)).values("id")
    return (
        await Attachment.filter(id=pk, message_id__in=Subquery(messages))
        .select_related("message__conversation")
        .first()
    )
