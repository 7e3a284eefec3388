"""Listing documents with their authors costs the same SQL for 5 documents as for 50."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import httpx
import pytest

from models.base import utcnow
from models.consent import Consent, ConsentAccess
from models.document import Document, DocumentCategory
from tests.factories import Person, Staff, make_patient, make_professional
from tests.graphql import gql
from tests.sql_counter import count_statements

# Deliberate figures: a change that adds a statement to the dossier read must say so here.
# A professional's read: session, relation with the patient's row, the access event, the
# page with its authors. The event is one statement on PostgreSQL (the chain's head moved,
# locked and sealed, and the event written: models/audit.py), two on SQLite (the head, then
# the event). The page is one statement on PostgreSQL, its authors joined to it; on SQLite
# it is the page, then its authors of each kind by key (here professionals and patients),
# all three in one call on SQLite's thread (resolvers/pagination.py, fetch_first_rows). The
# holder's read is no access event.
PROFESSIONAL_STATEMENTS = {"postgres": 4, "sqlite": 7}
HOLDER_STATEMENTS = {"postgres": 4, "sqlite": 6}

AUTHOR = "author { ... on Professional { lastName } ... on Patient { firstName } }"
AS_PROFESSIONAL = f"""query($id: ID!) {{ patient(id: $id) {{ documents(first: 50) {{
  edges {{ node {{ title category date {AUTHOR} }} }} }} }} }}"""
AS_HOLDER = f"""{{ viewer {{ ... on Patient {{ documents(first: 50) {{
  edges {{ node {{ title category date {AUTHOR} }} }} }} }} }} }}"""


async def dossier(size: int, authors: list[Person | Staff], name: str) -> Person:
    """A space with `size` documents, deposited in turn by each of `authors`."""
    holder = await make_patient(name, "Lefebvre")
    documents = []
    for n in range(size):
        author = authors[n % len(authors)] if n % 5 else holder
        data = f"{name} {n}".encode()
        documents.append(
            Document(
                patient_id=holder.patient.id,
                title=f"Document {n}",
                category=list(DocumentCategory)[n % len(DocumentCategory)],
                date=date(2024, 1, 1) + timedelta(days=n),
                mime_type="text/plain",
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                author_patient_id=author.patient.id if isinstance(author, Person) else None,
                author_professional_id=author.pk if isinstance(author, Staff) else None,
            )
        )
    await Document.bulk_create(documents)
    return holder


async def authors() -> list[Person | Staff]:
    """Three professionals and a patient (say, a representative) besides the holder."""
    return [
        await make_professional("Moreau"),
        await make_professional("Garnier"),
        await make_professional("Roux"),
        await make_patient("Claire", "Petit", login=False),
    ]


async def statements_for(
    client: httpx.AsyncClient, query: str, token: str | None, size: int, **variables: str
) -> list[str]:
    with count_statements() as statements:
        result = await gql(client, query, variables, token=token)
    data = result.ok()
    page = data["patient"] if "patient" in data else data["viewer"]
    assert len(page["documents"]["edges"]) == size
    assert {edge["node"]["author"] is not None for edge in page["documents"]["edges"]} == {True}
    return statements


async def test_a_professional_lists_5_or_50_documents_in_the_same_statements(
    client: httpx.AsyncClient,
) -> None:
    doc = await make_professional("Lecteur")
    writers = await authors()
    small = await dossier(5, writers, "Alice")
    large = await dossier(50, writers, "Berthe")
    for holder in (small, large):
        await Consent.create(
            patient_id=holder.patient.id,
            professional_id=doc.pk,
            access=ConsentAccess.READ,
            granted_at=utcnow(),
        )
    await statements_for(client, AS_PROFESSIONAL, doc.token, 5, id=small.id)  # warm-up

    five = await statements_for(client, AS_PROFESSIONAL, doc.token, 5, id=small.id)
    fifty = await statements_for(client, AS_PROFESSIONAL, doc.token, 50, id=large.id)

    print(f"\npatient.documents as a professional: {len(five)} statements for 5 and 50")
    assert len(fifty) == len(five), "\n".join(["5:", *five, "50:", *fifty])
    # The session; the relation, which brings the patient's row and decides that it is
    # visible; the access event; the page with its authors.
    dialect = Document._meta.db.capabilities.dialect
    assert len(five) == PROFESSIONAL_STATEMENTS[dialect], "\n".join(five)


async def test_the_holder_lists_5_or_50_documents_in_the_same_statements(
    client: httpx.AsyncClient,
) -> None:
    writers = await authors()
    small = await dossier(5, writers, "Alice")
    large = await dossier(50, writers, "Berthe")
    await statements_for(client, AS_HOLDER, small.token, 5)  # warm-up

    five = await statements_for(client, AS_HOLDER, small.token, 5)
    fifty = await statements_for(client, AS_HOLDER, large.token, 50)

    print(f"\nviewer.documents as the holder: {len(five)} statements for 5 and 50")
    assert len(fifty) == len(five), "\n".join(["5:", *five, "50:", *fifty])
    # The session; the viewer's row; the relation (the space's status); the page with its
    # authors. The holder's own reads are not access events.
    dialect = Document._meta.db.capabilities.dialect
    assert len(five) == HOLDER_STATEMENTS[dialect], "\n".join(five)


async def test_the_written_out_first_page_answers_as_the_orm(client: httpx.AsyncClient) -> None:
    """fetch_first_values (DocumentScope.sql) against fetch_values (DocumentScope.q), for
    every scope and category, with the authors it primes against the loaders'."""
    from models.document import DocumentScope, Shown
    from models.patient import Patient
    from models.professional import Professional
    from resolvers.dossier import DOCUMENT_FIELDS, DOCUMENT_ORDER
    from resolvers.loaders import ByIdLoader
    from resolvers.pagination import Where, fetch_first_values, fetch_values

    writers = await authors()
    holder = await dossier(12, writers, "Alice")
    author = next(w for w in writers if isinstance(w, Staff))
    stranger = await make_professional("Inconnu")
    documents = await Document.filter(patient_id=holder.patient.id).order_by("date")
    for n, document in enumerate(documents):  # hidden, hidden from representatives, both
        document.hidden = n % 3 == 0
        document.hidden_from_representatives = n % 4 == 0
        await document.save()
    scopes = [
        DocumentScope(holder.patient.id, shown, pro)
        for shown in Shown
        for pro in (author.pk, stranger.pk, None)
    ]
    sizes: set[int] = set()
    for scope in scopes:
        for category in (None, DocumentCategory.PRESCRIPTION):
            query = Document.filter(scope.q())
            where = Where(*scope.sql())
            if category is not None:
                query = query.filter(category=category)
                where &= Where('"category" = {}', [category.value])
            for limit in (3, 50):
                pros, patients = ByIdLoader(Professional), ByIdLoader(Patient)
                prime = {"author_professional_id": pros, "author_patient_id": patients}
                written = await fetch_first_values(
                    Document, where, DOCUMENT_ORDER, limit, DOCUMENT_FIELDS, prime
                )
                orm = await fetch_values(
                    query.order_by(*DOCUMENT_ORDER.order_by()).limit(limit), DOCUMENT_FIELDS
                )
                assert written == orm, (scope, category, limit)
                for loader, key in (
                    (pros, "author_professional_id"),
                    (patients, "author_patient_id"),
                ):
                    ids = sorted({row[key] for row in orm if row[key] is not None})
                    assert all(loader.cache_map.get(pk) is not None for pk in ids)
                    primed = [await loader.load(pk) for pk in ids]
                    fresh = await ByIdLoader(loader.model).load_many(ids)
                    assert [vars(row) for row in primed] == [vars(row) for row in fresh]
                sizes.add(len(orm))
    assert len(sizes) > 3, sizes  # the scopes and categories do tell documents apart


PAGED = f"""query($id: ID!, $after: String, $category: DocumentCategory) {{ patient(id: $id) {{
  documents(first: 7, after: $after, category: $category) {{ pageInfo {{ hasNextPage endCursor }}
  edges {{ node {{ id title hidden {AUTHOR} }} }} }} }} }}"""


async def test_later_pages_through_the_orm_follow_the_written_out_first(
    client: httpx.AsyncClient,
) -> None:
    """Pages after the first (read through the ORM) continue the first (written out), with
    the same authors; the same with a category."""
    doc = await make_professional("Lecteur")
    holder = await dossier(30, await authors(), "Alice")
    for document in await Document.filter(patient_id=holder.patient.id).order_by("date"):
        document.hidden = document.title.endswith(("3", "7"))
        await document.save()
    await Consent.create(
        patient_id=holder.patient.id,
        professional_id=doc.pk,
        access=ConsentAccess.READ,
        granted_at=utcnow(),
    )
    whole = await gql(
        client,
        AS_PROFESSIONAL.replace("first: 50", "first: 100"),
        {"id": holder.id},
        token=doc.token,
    )
    expected = [edge["node"] for edge in whole.ok()["patient"]["documents"]["edges"]]
    assert len(expected) == 24  # 6 hidden by the holder
    for category in (None, "REPORT"):
        nodes: list[dict[str, object]] = []
        after = None
        while True:
            variables = {"id": holder.id, "after": after, "category": category}
            page = (await gql(client, PAGED, variables, token=doc.token)).ok()
            documents = page["patient"]["documents"]
            nodes += [edge["node"] for edge in documents["edges"]]
            if not documents["pageInfo"]["hasNextPage"]:
                break
            after = documents["pageInfo"]["endCursor"]
        assert not any(node["hidden"] for node in nodes)
        wanted = [n for n in expected if category is None or n["category"] == category]
        assert wanted
        assert [(n["title"], n["author"]) for n in nodes] == [
            (n["title"], n["author"]) for n in wanted
        ]


async def test_a_page_is_read_from_the_index_without_sorting(client: httpx.AsyncClient) -> None:
    """The dossier's page index ends with the id (migration 0016), so SQLite reads a page,
    newest first, off the index: no temporary B-tree to sort it, on either reader's
    statement."""
    import re

    if Document._meta.db.capabilities.dialect != "sqlite":
        pytest.skip("SQLite's query plan")
    doc = await make_professional("Lecteur")
    holder = await dossier(30, await authors(), "Alice")
    await Consent.create(
        patient_id=holder.patient.id,
        professional_id=doc.pk,
        access=ConsentAccess.READ,
        granted_at=utcnow(),
    )
    read = await statements_for(client, AS_PROFESSIONAL, doc.token, 30, id=holder.id)
    own = await statements_for(client, AS_HOLDER, holder.token, 30)
    pages = [sql for sql in (*read, *own) if 'FROM "document"' in sql]
    assert len(pages) == 2, pages
    for sql in pages:
        count = max(int(n) for n in re.findall(r"\?(\d+)", sql))
        plan = await Document._meta.db.execute_query_dict(
            f"EXPLAIN QUERY PLAN {sql}", [None] * count
        )
        details = [row["detail"] for row in plan]
        assert not [d for d in details if "TEMP B-TREE" in d], details
        assert any("idx_document_patient" in d for d in details), details


async def test_whom_a_professional_is_blocked_by_is_not_a_scan(
    client: httpx.AsyncClient,
) -> None:
    """The relation's and the send's `BLOCKING` subquery (by professional) reads an index
    (migration 0017), not every block of every patient."""
    from models.access import BLOCKING

    if Document._meta.db.capabilities.dialect != "sqlite":
        pytest.skip("SQLite's query plan")
    sql = BLOCKING.format(pro="?1")
    plan = await Document._meta.db.execute_query_dict(f"EXPLAIN QUERY PLAN {sql}", [None])
    details = [row["detail"] for row in plan]
    assert not [d for d in details if d.startswith("SCAN")], details
