"""The dossier's first page, read without the work it does not need: the ORM's queryset
built only for other pages and `totalCount` (LazyQuery), the authors read off the loaders'
caches when primed (`cached`), rows a loader already holds not made into instances again
(`ByIdLoader.holds`), the selection read off the document (`selects`) and cursors written
without json when json would write them verbatim. Each answers as what it replaces."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from graphql import FieldNode, FragmentDefinitionNode, OperationDefinitionNode, parse
from strawberry.dataloader import DataLoader
from strawberry.types.nodes import SelectedField, Selection, convert_selections

from models.document import Document, DocumentScope, Shown
from models.patient import Patient
from models.professional import Professional
from resolvers import ids
from resolvers.dossier import DOCUMENT_FIELDS, DOCUMENT_ORDER, selects
from resolvers.loaders import ByIdLoader, cached
from resolvers.pagination import (
    LazyQuery,
    Primable,
    Where,
    encode_cursor,
    fetch_first_values,
    paginate,
)
from tests.test_statement_count import authors, dossier


def _json_cursor(values: list[Any]) -> str:
    texts = [v.isoformat() if isinstance(v, date | datetime) else str(v) for v in values]
    return base64.urlsafe_b64encode(json.dumps(texts).encode()).decode().rstrip("=")


def test_cursors_are_written_as_json_writes_them() -> None:
    odd = [chr(c) for c in range(0x110)] + ["é", "\u2028", 'a"b', "a\\b", "", "\U0001f600"]
    cases: list[list[Any]] = [[], [""], [date(2024, 2, 29), datetime.now(UTC), uuid4(), 7]]
    cases += [[text] for text in odd] + [["x", text, "y"] for text in odd]
    for values in cases:
        assert encode_cursor(values) == _json_cursor(values), values


def _strawberry_selects(selections: list[Selection], *path: str) -> bool:
    """What `selects` did before, on strawberry's `selected_fields`."""
    if not path:
        return True
    for selection in selections:
        if isinstance(selection, SelectedField) and selection.name != path[0]:
            continue
        rest = path[1:] if isinstance(selection, SelectedField) else path
        if _strawberry_selects(selection.selections, *rest):
            return True
    return False


class _Info:
    """What convert_selections reads of a resolve info."""

    def __init__(self, fragments: dict[str, Any]) -> None:
        self.fragments = fragments
        self.variable_values: dict[str, Any] = {}


SELECTIONS = (
    "{ documents { edges { node { author { __typename } } } } }",
    "{ documents { nodes { author { __typename } } } }",
    "{ documents { edges { node { title } } nodes { id } } }",
    "{ documents { edges { cursor } } }",
    "{ documents { totalCount } }",
    "{ documents { ...Page } } fragment Page on DocumentConnection { edges { ...Node } }"
    " fragment Node on DocumentEdge { node { ... on Document { author { __typename } } } }",
    "{ documents { ... { edges { node { a: author @skip(if: true) { __typename } } } } } }",
    "{ documents { author: edges { title: node { title } } } }",
    "{ documents { edges { node { ...F } } } } fragment F on Document { title }",
)


@pytest.mark.parametrize("text", SELECTIONS)
def test_selects_answers_as_strawberry_selected_fields(text: str) -> None:
    document = parse(text)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    nodes = [s for s in operation.selection_set.selections if isinstance(s, FieldNode)]
    converted = convert_selections(_Info(fragments), nodes)  # type: ignore[arg-type]
    for path in (("edges", "node", "author"), ("nodes", "author"), ("edges", "cursor")):
        expected = any(_strawberry_selects(f.selections, *path) for f in converted)
        found = any(selects(node.selection_set, fragments, *path) for node in nodes)
        assert found == expected, (text, path)


async def test_cached_answers_only_what_load_many_would_without_waiting() -> None:
    async def load(keys: list[int]) -> list[Any]:
        return [ValueError("gone") if key == 3 else key * 10 for key in keys]

    loader: DataLoader[int, Any] = DataLoader(load_fn=load)
    assert cached(loader, []) == []
    assert cached(loader, [1]) is None  # never asked
    loader.prime(1, "one")
    assert cached(loader, [1, 1]) == ["one", "one"]
    pending = loader.load(2)
    assert cached(loader, [1, 2]) is None  # not loaded yet
    assert await pending == 20
    assert cached(loader, [2, 1]) == [20, "one"] == await loader.load_many([2, 1])
    with pytest.raises(ValueError, match="gone"):
        await loader.load(3)
    assert cached(loader, [3]) is None  # failed: load_many raises it again
    assert cached(DataLoader(load_fn=load, cache=False), []) is None


async def test_a_loader_holds_a_row_only_when_priming_would_leave_it(
    client: httpx.AsyncClient,
) -> None:
    pros = ByIdLoader(Professional)
    pk = uuid4()
    assert not pros.holds(pk)
    waiting = pros.load(pk)  # in a batch not dispatched yet: priming would settle it
    assert not pros.holds(pk)
    row = Professional(id=pk, first_name="A", last_name="B", rpps="10000000001")
    pros.prime_many({pk: row})
    assert await waiting is row
    assert pros.holds(pk)


async def test_the_first_page_keeps_the_rows_its_loaders_hold(client: httpx.AsyncClient) -> None:
    """A row a loader already holds stays (priming would not replace it); the others are
    primed as before; the values read are the same either way."""
    writers = await authors()
    holder = await dossier(12, writers, "Alice")
    where = Where(*DocumentScope(holder.patient.id, Shown.ALL).sql())
    fresh_patients = ByIdLoader(Patient)
    fresh: dict[str, Primable] = {
        "author_professional_id": ByIdLoader(Professional),
        "author_patient_id": fresh_patients,
    }
    expected = await fetch_first_values(Document, where, DOCUMENT_ORDER, 50, DOCUMENT_FIELDS, fresh)
    held = await Patient.get(id=holder.patient.id)
    patients = ByIdLoader(Patient)
    patients.prime(holder.patient.id, held)
    prime: dict[str, Primable] = {
        "author_professional_id": ByIdLoader(Professional),
        "author_patient_id": patients,
    }
    rows = await fetch_first_values(Document, where, DOCUMENT_ORDER, 50, DOCUMENT_FIELDS, prime)
    assert rows == expected
    assert await patients.load(holder.patient.id) is held
    ids = {row["author_patient_id"] for row in rows if row["author_patient_id"]} - {
        holder.patient.id
    }
    assert ids and all(patients.holds(pk) for pk in ids)
    for pk in ids:
        assert vars(await patients.load(pk)) == vars(await fresh_patients.load(pk))


async def test_the_queryset_is_built_for_other_pages_and_counts_only(
    client: httpx.AsyncClient,
) -> None:
    from resolvers.dossier import Document as DocumentNode
    from resolvers.dossier import DocumentConnection

    writers = await authors()
    holder = await dossier(7, writers, "Bob")
    scope = DocumentScope(holder.patient.id, Shown.ALL)
    built: list[int] = []

    def build() -> Any:
        built.append(1)
        return Document.filter(scope.q())

    async def page(after: str | None, first: int = 3) -> Any:
        return await paginate(
            LazyQuery(Document, build),
            DOCUMENT_ORDER,
            first=first,
            after=after,
            wrap=DocumentNode.from_values,
            connection=DocumentConnection,
            fields=DOCUMENT_FIELDS,
            where=Where(*scope.sql()),
        )

    first = await page(None)
    assert built == [] and len(first.edges) == 3
    assert await first.total_count() == 7 and built == [1]
    second = await page(first.page_info.end_cursor)
    assert built == [1, 1]
    assert [e.node.pk for e in second.edges] == [e.node.pk for e in (await page(None, 6)).edges[3:]]
    with pytest.raises(Exception, match="Invalid cursor"):
        await page("not a cursor", 0)  # an empty page still refuses a malformed cursor
    assert isinstance(first.edges[0].node.pk, UUID)


def test_global_ids_are_urlsafe_base64_without_padding() -> None:
    for type_name in ("Document", "Patient", "É", ""):
        for _ in range(50):
            pk = uuid4()
            expected = base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode()
            assert ids.encode(type_name, pk) == expected.rstrip("=")
            assert ids.decode(ids.encode(type_name, pk)) == (type_name, pk)
