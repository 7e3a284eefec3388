"""Per-request DataLoaders, named <Entity>By<Key>Loader; every relation goes through one."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

from strawberry.dataloader import DataLoader
from tortoise.models import Model

from models import access
from models.account import Operator
from models.appointment import Appointment
from models.base import parameter_prefix
from models.catalogue import PartnerApp
from models.consent import Block, Consent
from models.document import Document
from models.message import (
    Attachment,
    Conversation,
    Message,
    ReadMark,
    SenderRole,
    unread_counts,
)
from models.patient import Patient, Representation
from models.professional import Establishment, Professional
from models.record import HealthProfile, Screening, Vaccination
from resolvers.pagination import fetch_last_of_each, instances

if TYPE_CHECKING:
    from api.context import Context

M = TypeVar("M", bound=Model)
K = TypeVar("K")
T = TypeVar("T")


def cached(loader: DataLoader[K, T], keys: Sequence[K]) -> list[T] | None:
    """What `await loader.load_many(keys)` answers when every key is already in the loader's
    cache with its value (primed, or loaded earlier in the request), without the futures
    and gather it takes; None otherwise (an absent, pending or failed key): await it."""
    if not loader.cache:
        return None
    values = []
    for key in keys:
        future = loader.cache_map.get(key)
        if future is None or not future.done() or future.cancelled() or future.exception():
            return None
        values.append(future.result())
    return values


class ByIdLoader(DataLoader[UUID, M | None], Generic[M]):
    """Rows by primary key, one query per batch. Visibility is the caller's business."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        # Not `self._load`: a loader holding its own bound method is a reference cycle, left
        # to the cyclic collector with every row it cached.
        super().__init__(load_fn=partial(_rows_by_id, model))

    def holds(self, key: UUID) -> bool:
        """Whether `prime_many` would leave this key as it is: in the cache, and no batch
        waiting to be dispatched (priming settles the keys of one)."""
        batch = self.batch
        return (
            self.cache
            and self.cache_map.get(key) is not None
            and (batch is None or batch.dispatched or not batch.tasks)
        )


async def _rows_by_id(model: type[M], keys: Sequence[UUID]) -> list[M | None]:
    # The statement written out, instances made as the ORM makes them (`instances`):
    # building `filter(pk__in=...)` costs more than the rest of the query (~0.3 ms).
    meta = model._meta
    db = meta.db  # the transaction's connection inside one
    ids = [meta.pk.to_db_value(key, model) for key in set(keys)]
    p = parameter_prefix(db)
    marks = ", ".join(f"{p}{n + 1}" for n in range(len(ids)))
    sql = f'SELECT * FROM "{meta.db_table}" WHERE "{meta.db_pk_column}" IN ({marks})'  # noqa: S608
    _, rows = await db.execute_query(sql, ids)
    by_id: dict[Any, M] = {row.pk: row for row in instances(model, rows)}
    return [by_id.get(key) for key in keys]


class Loaders:
    """Each loader is made on first use: a request needs a few of them."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def release(self) -> None:
        """Forgets the loaders made so far, once the operation is over (`Context.release`):
        each holds a bound method of this object, a reference cycle. One still in use
        keeps working; asked again, a loader is made anew."""
        for name in [name for name in vars(self) if name != "context"]:
            del self.__dict__[name]

    @cached_property
    def patient(self) -> ByIdLoader[Patient]:
        return ByIdLoader(Patient)

    @cached_property
    def professional(self) -> ByIdLoader[Professional]:
        return ByIdLoader(Professional)

    @cached_property
    def establishment(self) -> ByIdLoader[Establishment]:
        return ByIdLoader(Establishment)

    @cached_property
    def operator(self) -> ByIdLoader[Operator]:
        return ByIdLoader(Operator)

    @cached_property
    def partner_app(self) -> ByIdLoader[PartnerApp]:
        return ByIdLoader(PartnerApp)

    @cached_property
    def relation(self) -> DataLoader[UUID, access.Relation]:
        return DataLoader(load_fn=self._relations)

    @cached_property
    def dependents(self) -> DataLoader[UUID, list[Patient]]:
        return DataLoader(load_fn=self._dependents)

    @cached_property
    def representatives(self) -> DataLoader[UUID, list[Patient]]:
        return DataLoader(load_fn=self._representatives)

    @cached_property
    def vaccinations(self) -> DataLoader[UUID, list[Vaccination]]:
        return DataLoader(load_fn=self._vaccinations)

    @cached_property
    def screenings(self) -> DataLoader[UUID, list[Screening]]:
        return DataLoader(load_fn=self._screenings)

    @cached_property
    def health_profile(self) -> DataLoader[UUID, HealthProfile | None]:
        return DataLoader(load_fn=self._health_profiles)

    @cached_property
    def consents(self) -> DataLoader[UUID, list[Consent]]:
        return DataLoader(load_fn=self._consents)

    @cached_property
    def conversation(self) -> ByIdLoader[Conversation]:
        return ByIdLoader(Conversation)

    @cached_property
    def appointment(self) -> ByIdLoader[Appointment]:
        return ByIdLoader(Appointment)

    @cached_property
    def attachments(self) -> DataLoader[UUID, list[Attachment]]:
        return DataLoader(load_fn=self._attachments)

    @cached_property
    def read_marks(self) -> DataLoader[UUID, dict[SenderRole, ReadMark]]:
        return DataLoader(load_fn=self._read_marks)

    @cached_property
    def last_message(self) -> DataLoader[UUID, Message | None]:
        """Each conversation's last message in the order of `Conversation.messages`, all in
        one statement. Visibility is the caller's business (the conversation's)."""
        return DataLoader(load_fn=self._last_messages)

    @cached_property
    def document(self) -> ByIdLoader[Document]:
        return ByIdLoader(Document)

    @cached_property
    def unread_count(self) -> DataLoader[UUID, int]:
        """How many messages of each conversation the viewer has not read (the one
        definition: models/message.py `UNREAD_BY`), all in one statement. Visibility is the
        caller's business (the conversation's)."""
        return DataLoader(load_fn=self._unread_counts)

    @cached_property
    def blocked_professionals(self) -> DataLoader[UUID, list[Professional]]:
        """The professionals each space blocks, by name. Visibility is the caller's."""
        return DataLoader(load_fn=self._blocked_professionals)

    @cached_property
    def membership(self) -> DataLoader[UUID, bool]:
        """Whether the viewer is a member of each establishment's shared inbox."""
        return DataLoader(load_fn=self._memberships)

    async def _by_patient(self, model: type[M], keys: Sequence[UUID], *order: str) -> list[list[M]]:
        rows = await model.filter(patient_id__in=list(set(keys))).order_by(*order)
        out: dict[UUID, list[M]] = {key: [] for key in keys}
        for row in rows:
            out[row.patient_id].append(row)  # type: ignore[attr-defined]
        return [out[key] for key in keys]

    async def _vaccinations(self, keys: Sequence[UUID]) -> list[list[Vaccination]]:
        return await self._by_patient(Vaccination, keys, "-date", "-created_at")

    async def _screenings(self, keys: Sequence[UUID]) -> list[list[Screening]]:
        return await self._by_patient(Screening, keys, "-date", "-created_at")

    async def _attachments(self, keys: Sequence[UUID]) -> list[list[Attachment]]:
        rows = await Attachment.filter(message_id__in=list(set(keys))).order_by("created_at", "id")
        out: dict[UUID, list[Attachment]] = {key: [] for key in keys}
        for row in rows:
            out[row.message_id].append(row)
        return [out[key] for key in keys]

    async def _last_messages(self, keys: Sequence[UUID]) -> list[Message | None]:
        from resolvers.messaging import MESSAGE_ORDER  # it imports this module, through Info

        found = await fetch_last_of_each(Message, "conversation_id", list(set(keys)), MESSAGE_ORDER)
        return [found.get(key) for key in keys]

    async def _unread_counts(self, keys: Sequence[UUID]) -> list[int]:
        found = await unread_counts(self.context.actor, list(set(keys)))
        return [found.get(key, 0) for key in keys]

    async def _blocked_professionals(self, keys: Sequence[UUID]) -> list[list[Professional]]:
        blocks = (
            await Block.filter(patient_id__in=list(set(keys)))
            .select_related("professional")
            .order_by("professional__last_name", "professional__first_name", "professional_id")
        )
        out: dict[UUID, list[Professional]] = {key: [] for key in keys}
        for block in blocks:
            out[block.patient_id].append(block.professional)
        return [out[key] for key in keys]

    async def _read_marks(self, keys: Sequence[UUID]) -> list[dict[SenderRole, ReadMark]]:
        rows = await ReadMark.filter(conversation_id__in=list(set(keys)))
        out: dict[UUID, dict[SenderRole, ReadMark]] = {key: {} for key in keys}
        for row in rows:
            out[row.conversation_id][row.side] = row
        return [out[key] for key in keys]

    async def _memberships(self, keys: Sequence[UUID]) -> list[bool]:
        found = await access.memberships(self.context.actor, list(set(keys)))
        return [key in found for key in keys]

    async def _consents(self, keys: Sequence[UUID]) -> list[list[Consent]]:
        return await self._by_patient(Consent, keys, "-granted_at", "-id")

    async def _health_profiles(self, keys: Sequence[UUID]) -> list[HealthProfile | None]:
        rows = await HealthProfile.filter(patient_id__in=list(set(keys)))
        by_patient = {row.patient_id: row for row in rows}
        return [by_patient.get(key) for key in keys]

    async def _relations(self, keys: Sequence[UUID]) -> list[access.Relation]:
        ctx = self.context
        found = await access.relations(ctx.actor, list(keys), ctx.today, ctx.now)
        return [found[key] for key in keys]

    async def _dependents(self, keys: Sequence[UUID]) -> list[list[Patient]]:
        today = self.context.today
        links = await Representation.filter(representative_id__in=list(keys)).prefetch_related(
            "dependent"
        )
        out: dict[UUID, list[Patient]] = {key: [] for key in keys}
        for link in links:
            dependent = link.dependent
            if access.is_minor(dependent.birth_date, today):
                out[link.representative_id].append(dependent)
        return [sorted(out[key], key=lambda p: p.birth_date) for key in keys]

    async def _representatives(self, keys: Sequence[UUID]) -> list[list[Patient]]:
        today = self.context.today
        links = await Representation.filter(dependent_id__in=list(keys)).prefetch_related(
            "representative", "dependent"
        )
        out: dict[UUID, list[Patient]] = {key: [] for key in keys}
        for link in links:
            if access.is_minor(link.dependent.birth_date, today):
                out[link.dependent_id].append(link.representative)
        return [out[key] for key in keys]
