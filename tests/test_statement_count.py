"""Listing documents with their authors costs the same SQL for 5 documents as for 50."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import httpx

from models.base import utcnow
from models.consent import Consent, ConsentAccess
from models.document import Document, DocumentCategory
from tests.factories import Person, Staff, make_patient, make_professional
from tests.graphql import gql
from tests.sql_counter import count_statements

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
