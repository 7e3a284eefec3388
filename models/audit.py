"""The access log: append-only events, one per request, actor, patient, document and action.

Audit is explicit: domain operations and the read paths call these functions; no signals.

The log of each space is a hash chain, so that changing, removing or inserting an event
shows (`verify_chain`): each event has its position in its space's chain (`seq`, from 1, no
gap) and `chain_hash`, the SHA-256 of the previous event's hash (64 zeros for the first)
and of a canonical encoding of the event (`canonical`: every column, ids and moments in one
spelling whatever the database). The end of each chain, its last position, hash and moment,
is kept in the space's `AccessLogHead` row, which every append locks and updates in the
transaction of the event (`append_event`): on PostgreSQL the upsert of the head row holds
its lock until the commit, so concurrent writers to one space queue there and never fork
the chain (writers to other spaces never wait); SQLite serialises every write anyway.
Positions are thus given in commit order, which lets a live reader replay the log by
position with no gap (subscriptions/access_log.py).

What is kept when a space changes:
- closing a space keeps its log and head as they are; reopening it continues the chain;
- the purge of a closed space deletes its patient row, and every event and the head with
  it: there is no space left to verify, and nothing of it is kept;
- an opposition keeps only the proof of opposition (models/erasure.py): the events and the
  head are erased with everything else of the space, by decision: the log of a space that
  never came to be is the person's data like the rest. Should anything be logged for it
  afterwards, its chain starts again from position 1.
Nothing else ever deletes an event: there is no partial purge of a log, and so no
checkpoint to keep.

The chain shows any edit of the rows by someone who does not also recompute every later
hash and the head; someone who can rewrite the whole tail consistently can only be caught
against a copy of the heads kept elsewhere (keeping such copies is up to the operator).
`verify_chain` checks one space, `espace-sante audit verify` every space.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.expressions import Q, Subquery

from models.base import Entity, parameter_prefix, utcnow
from models.patient import Patient
from models.sqlite_thread import in_one_transaction, on_sqlite_thread

if TYPE_CHECKING:
    from models.access import Relation


class AccessAction(StrEnum):
    READ = "READ"
    WRITE = "WRITE"
    DOWNLOAD = "DOWNLOAD"
    LOOKUP = "LOOKUP"
    EMERGENCY_OPEN = "EMERGENCY_OPEN"
    EXPORT = "EXPORT"  # the whole space taken out (GET /export/{patientId}.fhir.json)


class AccessBasis(StrEnum):
    CONSENT = "CONSENT"
    TREATING_DOCTOR = "TREATING_DOCTOR"
    EMERGENCY = "EMERGENCY"
    REPRESENTATIVE = "REPRESENTATIVE"
    AUTHOR = "AUTHOR"
    CONVERSATION = "CONVERSATION"
    OPERATOR = "OPERATOR"
    APP = "APP"
    LOOKUP = "LOOKUP"  # a professional identified the patient by NIR and birth date
    HOLDER = "HOLDER"  # the holder's own export: the only act of the holder that is logged


class ActorRole(StrEnum):
    PATIENT = "PATIENT"
    PROFESSIONAL = "PROFESSIONAL"
    OPERATOR = "OPERATOR"
    PARTNER_APP = "PARTNER_APP"


class AccessEvent(Entity):
    """Never updated nor deleted while the space exists (no API writes but `record`)."""

    patient_id: UUID

    at = fields.DatetimeField()
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="access_events", on_delete=fields.CASCADE
    )
    actor_id = fields.UUIDField()
    actor_role = fields.CharEnumField(ActorRole, max_length=16)
    action = fields.CharEnumField(AccessAction, max_length=16)
    basis = fields.CharEnumField(AccessBasis, max_length=16)
    # Kept as a bare id so the log outlives a deleted document.
    document_id = fields.UUIDField(null=True)
    request_id = fields.CharField(max_length=32)
    # The establishment whose shared inbox the access went through (a member reading a
    # patient's message), as a bare id like the document's; null for any other access.
    establishment_id = fields.UUIDField(null=True)
    # Its place in the space's hash chain (see the module's docstring).
    seq = fields.BigIntField()
    chain_hash = fields.CharField(max_length=64)

    class Meta:
        table = "access_event"
        indexes = (("patient_id", "at"),)
        unique_together = (("patient", "seq"),)


class AccessLogHead(Entity):
    """The end of one space's chain: the position, hash and moment of its last event.

    Locked and moved by every append, in the event's transaction: the queue of concurrent
    writers to one space, and the anchor that shows events removed from the end."""

    patient: fields.OneToOneRelation[Patient] = fields.OneToOneField(
        "models.Patient", related_name="access_log_head", on_delete=fields.CASCADE
    )
    seq = fields.BigIntField()
    chain_hash = fields.CharField(max_length=64)
    last_at = fields.DatetimeField()
    patient_id: UUID

    class Meta:
        table = "access_log_head"


def readable_log(relation: Relation) -> Q:
    """Filter on AccessEvent: one patient's log as this viewer reads it.

    The holder reads all of it. A legal representative does not read the events about a
    document hidden from representatives: the minor's secret covers the traces of that
    document too (who deposited or read it, and when). Those events are left out of the
    list, its count and `node(id:)` alike, so that the log says nothing of such a document;
    an event the viewer does read names its document only when they may read that one too
    (else null, as for a deleted document). Anyone else reads nothing.
    """
    from models.document import Document

    own = Q(patient_id=relation.patient_id)
    if relation.holder:
        return own
    if not relation.representative:
        return own & Q(id__in=[])
    hidden = Document.filter(
        patient_id=relation.patient_id, hidden_from_representatives=True
    ).values("id")
    # Not `~Q(document_id__in=…)` alone: in SQL, NULL NOT IN (…) is not true, and the events
    # without a document would go too.
    return own & (Q(document_id=None) | ~Q(document_id__in=Subquery(hidden)))


# --- the chain --------------------------------------------------------------------------

GENESIS = "0" * 64  # the "previous hash" of a chain's first event

# The columns an event's hash covers: all of them but the hash itself.
CHAINED = (
    "id",
    "seq",
    "patient_id",
    "at",
    "created_at",
    "actor_id",
    "actor_role",
    "action",
    "basis",
    "document_id",
    "request_id",
    "establishment_id",
)


def _uuid(value: Any) -> str | None:
    # SQLite hands ids back as text, PostgreSQL as UUIDs: one spelling for both.
    if value is None:
        return None
    return str(value) if type(value) is UUID else str(UUID(str(value)))


def _instant(value: datetime) -> str:
    # Stored moments come back aware (UTC) from either database; a naive one is UTC too.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.year < 1000:  # strftime's %Y does not pad the year to four digits
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The same text as that strftime, several times faster (every event spells two moments).
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def _encoded(event: Mapping[str, Any]) -> dict[str, Any]:
    """The values `canonical` encodes, each in its one spelling, but the position."""
    encoded = {
        "id": _uuid(event["id"]),
        "patient_id": _uuid(event["patient_id"]),
        "at": _instant(event["at"]),
        "created_at": _instant(event["created_at"]),
        "actor_id": _uuid(event["actor_id"]),
        "actor_role": _text(event["actor_role"]),
        "action": _text(event["action"]),
        "basis": _text(event["basis"]),
        "document_id": _uuid(event["document_id"]),
        "request_id": str(event["request_id"]),
    }
    if event.get("establishment_id") is not None:
        # Only when there is one: the events written before the column keep their hashes.
        encoded["establishment_id"] = _uuid(event["establishment_id"])
    return encoded


def _unsequenced(encoded: dict[str, Any]) -> str:
    """`canonical` up to the event's position, its last value: `seq` sorts last among the
    keys, so the encoding is this, the position's digits and "}". The database finishes it
    in the statement that gives the position (`append_event`)."""
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"))[:-1] + ',"seq":'


def canonical(event: Mapping[str, Any]) -> bytes:
    """One event's columns (`CHAINED`) as the bytes its hash covers: JSON, sorted keys, no
    spaces, ASCII; ids lower-case with hyphens, moments in UTC to the microsecond."""
    return f"{_unsequenced(_encoded(event))}{int(event['seq'])}}}".encode("ascii")


def _digest(previous: str, unsequenced: str, seq: int) -> str:
    # The one definition of a link, which SQLite also calls from SQL (`_LINK`).
    return hashlib.sha256(f"{previous}\n{unsequenced}{seq}}}".encode("ascii")).hexdigest()


def link(previous: str, event: Mapping[str, Any]) -> str:
    """The hash of an event: SHA-256 over the previous event's hash, a newline, and the
    event's canonical encoding; 64 hex digits."""
    return _digest(previous, _unsequenced(_encoded(event)), int(event["seq"]))


# `_digest` in SQL, of <previous>, {p}5 (the event's `_unsequenced` encoding) and <seq>: the
# statement that moves a chain's head also computes its new hash, under the head's lock.
# SQLite calls `_digest` itself (registered on each connection, `_sqlite_link`); PostgreSQL
# has SHA-256 built in (the encoding is ASCII: its UTF-8 bytes are the same).
_LINK = {
    "sqlite": "access_chain_link(<previous>, {p}5, <seq>)",
    "postgres": (
        "encode(sha256(convert_to(<previous>::text || E'\\n' || {p}5::text || (<seq>)::text || '}',"
        " 'UTF8')), 'hex')"
    ),
}

# Numbered parameters: {p}1 …, filled in with the connection's prefix. Only constants.
# Moving the head takes its row lock until the commit (concurrent appends to one space queue
# there), gives the event its position and seals the new hash, in one statement.
_ADVANCE = (
    "INSERT INTO access_log_head (id, created_at, patient_id, seq, chain_hash, last_at)"
    " VALUES ({p}1, {p}2, {p}3, 1, <first>, {p}6)"
    " ON CONFLICT (patient_id) DO UPDATE SET seq = access_log_head.seq + 1,"
    " chain_hash = <next>, last_at = excluded.last_at"
    " RETURNING seq, chain_hash"
)
_INSERT = (
    "INSERT INTO access_event (id, created_at, at, patient_id, actor_id, actor_role, action,"
    " basis, document_id, request_id, establishment_id, seq, chain_hash)"
    " VALUES ({p}7, {p}2, {p}6, {p}3, {p}8, {p}9, {p}10, {p}11, {p}12, {p}13, {p}14, <position>)"
)


def _statements(dialect: str, p: str) -> tuple[str, ...]:
    """The append's statements on this dialect, parameters numbered as `append_event` passes
    them: PostgreSQL moves the head and writes the event in one (a data-modifying WITH),
    SQLite (which has none) in two, the event's position and hash returned by the first."""
    link_sql = _LINK[dialect]
    first = link_sql.replace("<previous>", "{p}4").replace("<seq>", "1")
    advance = _ADVANCE.replace("<first>", first).replace(
        "<next>",
        link_sql.replace("<previous>", "access_log_head.chain_hash").replace(
            "<seq>", "access_log_head.seq + 1"
        ),
    )
    if dialect == "postgres":
        insert = _INSERT.replace(
            "<position>", "(SELECT seq FROM head), (SELECT chain_hash FROM head)"
        )
        statements: tuple[str, ...] = (
            f"WITH head AS ({advance}) {insert} RETURNING seq, chain_hash",
        )
    else:
        statements = (advance, _INSERT.replace("<position>", "{p}15, {p}16"))
    return tuple(statement.replace("{p}", p) for statement in statements)


# Per dialect, made on first use.
_STATEMENTS: dict[str, tuple[str, ...]] = {}


def _statements_for(db: BaseDBAsyncClient) -> tuple[str, ...]:
    dialect = db.capabilities.dialect
    statements = _STATEMENTS.get(dialect)
    if statements is None:
        statements = _STATEMENTS[dialect] = _statements(dialect, parameter_prefix(db))
    return statements


# The SQLite connections `access_chain_link` is registered on.
_LINKED: weakref.WeakSet[Any] = weakref.WeakSet()


async def _sqlite_link(db: BaseDBAsyncClient) -> None:
    """Register `_digest` as `access_chain_link` on this SQLite connection, once."""
    if db._connection is not None and db._connection in _LINKED:
        return
    async with db.acquire_connection() as connection:
        if connection not in _LINKED:
            await connection.create_function("access_chain_link", 3, _digest, deterministic=True)
            _LINKED.add(connection)


async def append_event(db: BaseDBAsyncClient, event: dict[str, Any]) -> dict[str, Any]:
    """Append one event (its `CHAINED` columns but `seq`) to its space's chain, on `db`.

    On PostgreSQL one statement, atomic by itself: `db` may be outside a transaction. On
    SQLite two (move the head, write the event): `db` must be a transaction. The head row
    stays locked until it commits. Returns the event with its `seq` and `chain_hash`."""
    statements = _statements_for(db)
    if db.capabilities.dialect == "sqlite":
        await _sqlite_link(db)
    params = _parameters(event)
    # execute_query_dict: the rows of an INSERT … RETURNING on every driver.
    if len(statements) == 1:
        rows = await db.execute_query_dict(statements[0], params)
        seq, chain_hash = int(rows[0]["seq"]), str(rows[0]["chain_hash"])
    else:
        rows = await db.execute_query_dict(statements[0], params[:6])
        seq, chain_hash = int(rows[0]["seq"]), str(rows[0]["chain_hash"])
        await db.execute_insert(statements[1], [*params, seq, chain_hash])
    return {**event, "seq": seq, "chain_hash": chain_hash}


def _parameters(event: dict[str, Any]) -> list[Any]:
    """The append's parameters, numbered as `_statements` reads them."""
    encoded = _encoded(event)  # the values as hashed are the values as stored
    return [
        str(uuid4()),  # the head's id, should this be the space's first event
        event["created_at"],
        encoded["patient_id"],
        GENESIS,  # a new chain's "previous hash"
        _unsequenced(encoded),
        event["at"],
        encoded["id"],
        encoded["actor_id"],
        encoded["actor_role"],
        encoded["action"],
        encoded["basis"],
        encoded["document_id"],
        encoded["request_id"],
        encoded.get("establishment_id"),
    ]


async def _append_on_sqlite_thread(client: SqliteClient, event: dict[str, Any]) -> dict[str, Any]:
    """`append_event` in a transaction of its own, as one call on SQLite's thread
    (models/sqlite_thread.py): BEGIN, the head's move, the event, COMMIT, with one hand-off
    to that thread instead of five."""
    advance, insert = _statements_for(client)
    params = _parameters(event)
    log = client.log

    def append(conn: sqlite3.Connection) -> tuple[int, str]:
        log.debug("%s: %s", advance, params[:6])
        seq, chain_hash = conn.execute(advance, params[:6]).fetchone()
        log.debug("%s: %s", insert, [*params, seq, chain_hash])
        conn.execute(insert, [*params, seq, chain_hash])
        return int(seq), str(chain_hash)

    await _sqlite_link(client)
    seq, chain_hash = await on_sqlite_thread(client, in_one_transaction(append))
    return {**event, "seq": seq, "chain_hash": chain_hash}


# --- verification -----------------------------------------------------------------------

VERIFY_BATCH = 1000


@dataclass(frozen=True)
class Break:
    """Where a chain stops verifying: the first event that does not, or the end of the
    chain (`event_id` None) when events are missing there or the head is gone."""

    seq: int
    at: datetime | None
    event_id: UUID | None
    reason: str


@dataclass(frozen=True)
class Verification:
    patient_id: UUID
    events: int  # how many events the chain holds
    head_seq: int  # the head's position (0: no head)
    broken: Break | None

    @property
    def valid(self) -> bool:
        return self.broken is None


async def _chain(patient_id: UUID, after: int = 0) -> AsyncIterator[dict[str, Any]]:
    """One space's events past position `after`, in chain order, a batch at a time (a long
    log never sits whole in memory)."""
    last = after
    while True:
        query = AccessEvent.filter(patient_id=patient_id, seq__gt=last)
        rows = await query.order_by("seq").limit(VERIFY_BATCH).values(*CHAINED, "chain_hash")
        for row in rows:
            yield row
        if len(rows) < VERIFY_BATCH:
            return
        last = int(rows[-1]["seq"])


ALTERED = "this event was altered, or does not follow the previous one"


async def _head(patient_id: UUID) -> AccessLogHead | None:
    return await AccessLogHead.get_or_none(patient_id=patient_id)


async def verify_chain(patient_id: UUID) -> Verification:
    """Recompute one space's chain from its first event and compare it with every stored
    hash, position and the head. The first break found is reported:

    - an event altered (any column): that event's hash no longer matches;
    - an event removed: the next one's position skips (at that next event);
    - an event inserted: its hash does not match, or the one after it no longer does;
      one appended past the head is beyond the head's position (at that event);
    - events removed from the end, or the head altered: the head names a later or other
      last event (at the head's moment, that of the last event it recorded);
    - events without a head: at the last event.

    Safe while the log grows: the head and the events are read by separate statements, and
    an event with its head may commit between them. An event beyond the head first read is
    judged against the head read again (an event and its head commit together: a head read
    after an event was seen covers it), and once the events run out the head is read again
    and the events past the last one checked with it, until a head covers no more than what
    was checked. What commits during a check is then checked too, never taken for a break.
    """
    head = await _head(patient_id)
    head_seq = int(head.seq) if head is not None else 0
    previous, expected, count, walked = GENESIS, 1, 0, 0
    broken: Break | None = None
    last: dict[str, Any] | None = None
    headless = False  # the head, read again, is gone: reported at the end, not per event
    first_walk = True
    while True:
        found = 0
        async for row in _chain(patient_id, walked):
            found += 1
            count += 1
            last = row
            seq = walked = int(row["seq"])
            if broken is not None:
                continue
            where = (seq, row["at"], UUID(str(row["id"])))
            if seq > head_seq and not headless:
                # Committed, with its head, since the head was read? Read it again.
                head = await _head(patient_id)
                head_seq = int(head.seq) if head is not None else 0
                headless = head is None
            if seq != expected:
                reason = "an event is missing before this one" if seq > expected else "out of order"
                broken = Break(*where, reason)
            elif head is not None and seq > head_seq:
                broken = Break(*where, "an event past the end of the chain")
            elif link(previous, row) != row["chain_hash"]:
                broken = Break(*where, ALTERED)
            else:
                previous, expected = str(row["chain_hash"]), seq + 1
        if not first_walk and found == 0:
            break  # the head last read names events that are not there
        first_walk = False
        # Every event committed before this read is covered by it, and visible to the next.
        head = await _head(patient_id)
        head_seq = int(head.seq) if head is not None else 0
        if head_seq <= walked:
            break
    if broken is None:
        if head is None:
            if last is not None:
                broken = Break(int(last["seq"]), last["at"], None, "the chain has no head")
        elif head_seq != expected - 1 or head.chain_hash != previous:
            reason = "events are missing at the end, or the head was altered"
            broken = Break(head_seq, head.last_at, None, reason)
    return Verification(patient_id, count, head_seq, broken)


async def every_space() -> AsyncIterator[UUID]:
    """Every space, by id, a batch at a time."""
    last: UUID | None = None
    while True:
        query = Patient.all()
        if last is not None:
            query = query.filter(id__gt=last)
        ids = await query.order_by("id").limit(VERIFY_BATCH).values_list("id", flat=True)
        for pk in ids:
            yield UUID(str(pk))
        if len(ids) < VERIFY_BATCH:
            return
        last = UUID(str(ids[-1]))


# --- writing events ---------------------------------------------------------------------

# Told, after the commit, that a space's log grew up to a position (subscriptions publish it).
Announce = Callable[[UUID, int], Awaitable[None]]


@dataclass
class AuditTrail:
    """Per request: writes each distinct (patient, document, action, establishment) event once.

    With `announce`, each space whose log grew is announced once the event is committed:
    at once for an event written on its own, and by `flush()` (which the caller runs after
    its transaction) for one written inside the caller's transaction."""

    request_id: str
    actor_id: UUID | None
    actor_role: ActorRole | None
    now: datetime
    announce: Announce | None = None
    _written: set[tuple[UUID, UUID | None, AccessAction, UUID | None]] = field(default_factory=set)
    _pending: dict[UUID, int] = field(default_factory=dict)

    async def record(
        self,
        *,
        patient_id: UUID,
        action: AccessAction,
        basis: AccessBasis,
        document_id: UUID | None = None,
        establishment_id: UUID | None = None,
    ) -> None:
        """`establishment_id`: the establishment whose shared inbox the access went through."""
        key = (patient_id, document_id, action, establishment_id)
        if key in self._written or self.actor_id is None or self.actor_role is None:
            return
        self._written.add(key)
        event = {
            "id": uuid4(),
            "created_at": utcnow(),
            "at": self.now,
            "patient_id": patient_id,
            "actor_id": self.actor_id,
            "actor_role": self.actor_role,
            "action": action,
            "basis": basis,
            "document_id": document_id,
            "request_id": self.request_id,
            "establishment_id": establishment_id,
        }
        db = AccessEvent._meta.db  # the transaction's connection inside one
        if isinstance(db, TransactionalDBClient):
            # The caller's transaction: committed (and announced, by `flush`) with it.
            chained = await append_event(db, event)
            self._pending[patient_id] = max(self._pending.get(patient_id, 0), chained["seq"])
            return
        if len(_statements_for(db)) == 1:
            chained = await append_event(db, event)  # one statement: atomic on its own
        elif isinstance(db, SqliteClient):
            chained = await _append_on_sqlite_thread(db, event)
        else:
            # The model's own connection, already at hand (what `in_transaction()` looks up).
            async with db._in_transaction() as conn:
                chained = await append_event(conn, event)
        if self.announce is not None:
            await self.announce(patient_id, chained["seq"])

    async def flush(self) -> None:
        """Announce the spaces whose log grew (best effort: a reader also catches up from
        the database). Run it after the transaction the events were written in."""
        pending, self._pending = self._pending, {}
        if self.announce is None:
            return
        for patient_id, seq in pending.items():
            await self.announce(patient_id, seq)
