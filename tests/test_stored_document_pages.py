"""A dossier's first page made of its stored rows (`StoredDocument`, `StoredKey`) answers
what the same page made of converted dicts (`Document.from_values`) answers: every field,
every sort key, every cursor, forward and backward, whatever is read first."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from models.document import Document, DocumentScope, Shown
from resolvers.dossier import DOCUMENT_FIELDS, DOCUMENT_ORDER, DocumentConnection, StoredDocument
from resolvers.dossier import Document as DocumentNode
from resolvers.pagination import LazyQuery, Where, encode_cursor, paginate
from tests.test_statement_count import authors, dossier


async def _page(scope: DocumentScope, *, stored: bool, **window: Any) -> DocumentConnection:
    return await paginate(
        LazyQuery(Document, lambda: Document.filter(scope.q())),
        DOCUMENT_ORDER,
        wrap=DocumentNode.from_values,
        connection=DocumentConnection,
        fields=DOCUMENT_FIELDS,
        where=Where(*scope.sql()),
        stored=StoredDocument if stored else None,
        **window,
    )


# Every attribute a Document's readers read (its resolvers read these too).
ATTRIBUTES = ("id", "pk", *(name for name in DOCUMENT_FIELDS if name != "id"), "preloaded_author")


def _values(node: DocumentNode) -> dict[str, Any]:
    return {name: getattr(node, name) for name in ATTRIBUTES}


def test_the_attributes_are_the_data_fields_of_a_document() -> None:
    names = DocumentNode.__dataclass_fields__
    data = {name for name in names if not callable(getattr(DocumentNode, name, None))}
    assert set(ATTRIBUTES) == data


@pytest.mark.parametrize(
    "window",
    [{"first": 7, "after": None}, {"first": 50, "after": None}, {"first": None, "after": None}],
)
@pytest.mark.parametrize("shown", [Shown.ALL, Shown.NOT_HIDDEN])
async def test_a_stored_page_answers_as_the_converted_one(
    client: httpx.AsyncClient, window: dict[str, Any], shown: Shown
) -> None:
    writers = await authors()
    holder = await dossier(12, writers, "Alice")
    scope = DocumentScope(holder.patient.id, shown)
    expected = await _page(scope, stored=False, **window)
    found = await _page(scope, stored=True, **window)
    assert all(type(edge.node) is StoredDocument for edge in found.edges)
    assert all(isinstance(edge.node, DocumentNode) for edge in found.edges)
    assert [_values(e.node) for e in found.edges] == [_values(e.node) for e in expected.edges]
    assert [list(e.position) for e in found.edges] == [e.position for e in expected.edges]
    assert [encode_cursor(e.position) for e in found.edges] == [
        encode_cursor(e.position) for e in expected.edges
    ]
    assert found.page_info == expected.page_info


async def test_a_stored_backward_page_answers_as_the_converted_one(
    client: httpx.AsyncClient,
) -> None:
    writers = await authors()
    holder = await dossier(9, writers, "Bob")
    scope = DocumentScope(holder.patient.id, Shown.ALL)
    expected = await _page(scope, stored=False, first=None, after=None, last=4)
    found = await _page(scope, stored=True, first=None, after=None, last=4)
    assert [_values(e.node) for e in found.edges] == [_values(e.node) for e in expected.edges]
    assert found.page_info == expected.page_info


async def test_a_stored_node_converts_each_field_once_and_keeps_what_is_set(
    client: httpx.AsyncClient,
) -> None:
    writers = await authors()
    holder = await dossier(3, writers, "Carl")
    scope = DocumentScope(holder.patient.id, Shown.ALL)
    node = (await _page(scope, stored=True, first=3, after=None)).edges[0].node
    assert node.pk is node.pk  # converted on the first read, then kept
    assert node.id == DocumentNode.from_values({**_values(node), "id": node.pk}).id
    node.title = "Renamed"
    assert node.title == "Renamed"
