"""The professional directory (`professionals(search:)`) through the API: any search term a
user can type answers a list, never an internal error (review finding 14: a term longer
than an RPPS number was compared to the 11-character RPPS column and the ORM raised)."""

from __future__ import annotations

import httpx

from tests.factories import make_patient, make_professional
from tests.graphql import gql

DIRECTORY = """
query($search: String!) {
  professionals(search: $search) { id lastName rpps }
}"""


async def test_a_search_term_longer_than_an_rpps_number_searches_names(
    client: httpx.AsyncClient,
) -> None:
    # given a patient and two professionals, one with a surname longer than 11 characters
    alice = await make_patient()
    long_name = await make_professional("Vandenbroucke-Delacroix")
    await make_professional("Martin")

    # when the patient searches the directory for that surname, and for a longer term
    found = await gql(client, DIRECTORY, {"search": "vandenbroucke"}, token=alice.token)
    none = await gql(client, DIRECTORY, {"search": "x" * 500}, token=alice.token)

    # then the first finds that professional by name, and the second nothing, without errors
    assert found.errors == []
    assert [p["id"] for p in found.data["professionals"]] == [long_name.id]
    assert none.errors == []
    assert none.data == {"professionals": []}


async def test_an_rpps_number_still_finds_its_professional_whatever_its_separators(
    client: httpx.AsyncClient,
) -> None:
    # given a patient and two professionals
    alice = await make_patient()
    durand = await make_professional("Durand")
    await make_professional("Martin")
    rpps = (await gql(client, DIRECTORY, {"search": "durand"}, token=alice.token)).ok()[
        "professionals"
    ][0]["rpps"]

    # when the patient searches by the RPPS number, as stored and as printed with separators
    exact = await gql(client, DIRECTORY, {"search": rpps}, token=alice.token)
    dotted = await gql(
        client, DIRECTORY, {"search": f"{rpps[:3]}.{rpps[3:7]}.{rpps[7:]}"}, token=alice.token
    )
    longer = await gql(client, DIRECTORY, {"search": rpps + "0"}, token=alice.token)

    # then both find that professional, and one more digit finds nobody
    assert [p["id"] for p in exact.ok()["professionals"]] == [durand.id]
    assert [p["id"] for p in dotted.ok()["professionals"]] == [durand.id]
    assert longer.ok() == {"professionals": []}


async def test_first_is_taken_as_sent_zero_included_and_a_negative_one_is_refused(
    client: httpx.AsyncClient,
) -> None:
    # given a patient and three professionals of one name
    alice = await make_patient()
    for _ in range(3):
        await make_professional("Lefebvre")
    query = """
    query($first: Int) { professionals(search: "lefebvre", first: $first) { id } }"""

    # when the directory is asked for 0, 2, no number, and -1 professionals
    answers = [
        await gql(client, query, {"first": first}, token=alice.token) for first in (0, 2, None)
    ]
    negative = await gql(client, query, {"first": -1}, token=alice.token)

    # then it answers that many (the cost estimate counts `first` as sent), and refuses -1
    assert [len(a.ok()["professionals"]) for a in answers] == [0, 2, 3]
    assert negative.data is None
    assert negative.errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
