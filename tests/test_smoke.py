from __future__ import annotations

import httpx

from tests.factories import make_operator, make_patient
from tests.graphql import gql


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.json() == {
        "status": "ready",
        "checks": {"database": True, "broadcast": True, "objectStore": True},
    }


async def test_viewer_anonymous_is_null(client: httpx.AsyncClient) -> None:
    result = await gql(client, "{ viewer { __typename } }")
    assert result.ok() == {"viewer": None}


async def test_viewer_patient(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    result = await gql(client, "{ viewer { ... on Patient { firstName nir } } }", token=alice.token)
    assert result.ok() == {"viewer": {"firstName": "Alice", "nir": alice.nir}}


async def test_operator_sees_identity_not_nir(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    op = await make_operator()
    result = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { firstName status nir } }",
        {"id": alice.id},
        token=op.token,
    )
    assert result.data == {"patient": {"firstName": "Alice", "status": "ACTIVE", "nir": None}}
    assert result.codes == ["FORBIDDEN"]
