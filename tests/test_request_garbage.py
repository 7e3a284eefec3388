"""An HTTP operation leaves no reference cycle of ours behind: its context, loaders and
executor are freed as it ends, by reference counting, not by the cyclic collector (which
otherwise ran every few dozen requests, walking everything they left)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from strawberry.dataloader import DataLoader

from api.context import Context
from api.plans import PlannedExecutor
from models.base import utcnow
from models.consent import Consent, ConsentAccess
from resolvers.loaders import Loaders
from tests.factories import make_patient, make_professional
from tests.graphql import gql

OURS = (Context, Loaders, DataLoader, PlannedExecutor)

DOSSIER = """query($id: ID!) { patient(id: $id) { firstName documents(first: 10) {
  edges { node { title author { ... on Professional { lastName } } } } } } }"""


@contextmanager
def cyclic_garbage() -> Iterator[list[object]]:
    """What the cyclic collector finds after the block: only it could have freed that."""
    found: list[object] = []
    gc.collect()
    gc.disable()
    try:
        yield found
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_a_dossier_read_leaves_no_cycle_of_its_context_loaders_or_executor(
    client: httpx.AsyncClient,
) -> None:
    doc = await make_professional("Lecteur")
    holder = await make_patient("Alice", "Lefebvre")
    await Consent.create(
        patient_id=holder.patient.id,
        professional_id=doc.pk,
        access=ConsentAccess.READ,
        granted_at=utcnow(),
    )
    (await gql(client, DOSSIER, {"id": holder.id}, token=doc.token)).ok()  # warm-up

    with cyclic_garbage() as garbage:
        data = (await gql(client, DOSSIER, {"id": holder.id}, token=doc.token)).ok()

    assert data["patient"]["firstName"] == "Alice"
    assert [type(o).__name__ for o in garbage if isinstance(o, OURS)] == []


def test_a_released_context_makes_new_loaders_and_keeps_the_old_working() -> None:
    context = Context.__new__(Context)
    context._loaders = None
    loaders = context.loaders
    relation = loaders.relation

    context.release()

    assert context._loaders is None
    assert loaders.context is context  # a loader still in use still reaches its context
    assert relation.load_fn.__self__ is loaders  # type: ignore[attr-defined]
    assert context.loaders is not loaders
    assert context.loaders.relation is not relation


def test_a_refreshed_context_releases_the_last_deliverys_loaders() -> None:
    context = Context.__new__(Context)
    context._loaders = None
    context._audit = None
    loaders = context.loaders
    _ = loaders.patient

    context.refresh()

    assert "patient" not in vars(loaders)  # the loader it made is forgotten: no cycle left
    assert context.loaders is not loaders
