"""Document bytes in an S3-compatible object store: a real SeaweedFS on loopback
(tests/seaweed.py), started once for this module's tests."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from api.app import create_app
from api.config import Settings
from models.blob_crypto import encrypted_size
from models.blobs import Blob, BlobNotFound, S3Location, S3ObjectStore, StoreUnavailable
from models.document import Document
from tests.conftest import free_port
from tests.factories import make_patient
from tests.graphql import gql
from tests.seaweed import ACCESS_KEY, REGION, SECRET_KEY, Seaweed
from tests.seaweed import s3_prefix as s3_prefix
from tests.seaweed import seaweed as seaweed
from tests.test_documents import DELETE, add, download, upload

LETTER = "Lettre de liaison : sortie le 12, traitement inchangé, revoir à 3 mois.\n".encode()


def s3_settings(settings: Settings, endpoint: str, bucket: str, prefix: str) -> Settings:
    return replace(
        settings,
        blob_url=f"s3://{bucket}" + (f"/{prefix}" if prefix else ""),
        s3_endpoint_url=endpoint,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
        s3_region=REGION,
    )


async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def on_s3(settings: Settings, seaweed: Seaweed, s3_prefix: str) -> Settings:
    return s3_settings(settings, seaweed.endpoint, seaweed.bucket, s3_prefix)


@pytest.fixture
async def s3_client(on_s3: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for http in app_client(on_s3):
        yield http


@pytest.fixture
async def dead_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with an object store nobody listens to (the database is the test's)."""
    dead = s3_settings(settings, f"http://127.0.0.1:{free_port()}", "espace-sante", "")
    async for http in app_client(dead):
        yield http


# --- the object store itself ---------------------------------------------------------------


async def test_objects_round_trip_in_one_put_or_in_parts(seaweed: Seaweed, s3_prefix: str) -> None:
    place = S3Location(seaweed.bucket, s3_prefix, seaweed.endpoint, ACCESS_KEY, SECRET_KEY, REGION)
    store = S3ObjectStore(place)
    small, large = os.urandom(1000), os.urandom(9 * 1024 * 1024 + 123)  # two parts
    try:
        await store.write("a" * 32, [small[:10], small[10:]])
        await store.write(
            "b" * 32, (large[i : i + 1_000_000] for i in range(0, len(large), 1_000_000))
        )

        assert b"".join([c async for c in await store.open("a" * 32)]) == small
        assert b"".join([c async for c in await store.open("b" * 32)]) == large
        assert await store.size("b" * 32) == len(large)
        assert sorted(await seaweed.keys(s3_prefix)) == [f"{s3_prefix}/{n * 32}" for n in "ab"]
        await store.delete("a" * 32)
        await store.delete("a" * 32)  # already gone: no error
        assert await store.size("a" * 32) is None
        with pytest.raises(BlobNotFound):
            await store.open("a" * 32)
        with pytest.raises(ValueError):
            await store.open("../" + "a" * 29)
    finally:
        await store.aclose()


async def test_a_store_that_does_not_answer_is_unavailable_within_seconds() -> None:
    store = S3ObjectStore(
        S3Location("espace-sante", "", f"http://127.0.0.1:{free_port()}", "k", "s", REGION)
    )
    try:
        for call in (store.ping(), store.size("c" * 32), store.write("c" * 32, [b"x"])):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call
            assert time.monotonic() - started < 8  # a few seconds, on a loaded machine too
    finally:
        await store.aclose()


# --- documents on S3, through the API --------------------------------------------------


async def test_a_document_lives_encrypted_in_the_bucket_under_a_random_name(
    s3_client: httpx.AsyncClient,
    on_s3: Settings,
    seaweed: Seaweed,
    s3_prefix: str,
) -> None:
    alice = await make_patient()
    data = LETTER * 2000  # 150 KB: three segments
    sha = hashlib.sha256(data).hexdigest()

    document_id = await add(
        s3_client, alice.token, data, filename="l.txt", content_type="text/plain"
    )

    objects = await seaweed.keys(s3_prefix)
    [(key, stored)] = objects.items()
    row = await Blob.get(sha256=sha)
    assert key == f"{s3_prefix}/{row.name}"
    assert re.fullmatch(r"[0-9a-f]{32}", row.name)
    assert len(stored) == encrypted_size(len(data))
    assert LETTER[:30] not in stored
    assert list(on_s3.blob_dir.glob("**/*")) == []  # nothing on the local disk
    response = await download(s3_client, document_id, alice.token)
    assert response.status_code == 200
    assert response.content == data

    deleted = await gql(s3_client, DELETE, {"id": document_id}, token=alice.token)

    assert deleted.ok()
    assert await seaweed.keys(s3_prefix) == {}
    assert await Blob.all().count() == 0


async def test_readyz_names_the_object_store_when_it_is_down(
    s3_client: httpx.AsyncClient, dead_client: httpx.AsyncClient
) -> None:
    up = await s3_client.get("/readyz")
    down = await dead_client.get("/readyz")

    assert (up.status_code, up.json()["checks"]) == (
        200,
        {"database": True, "broadcast": True, "objectStore": True},
    )
    assert (down.status_code, down.json()) == (
        503,
        {
            "status": "unavailable",
            "checks": {"database": True, "broadcast": True, "objectStore": False},
        },
    )


async def test_an_upload_while_the_store_is_down_is_refused_promptly_and_leaves_no_document(
    dead_client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    started = time.monotonic()

    result = await upload(
        dead_client, alice.token, LETTER, filename="l.txt", content_type="text/plain"
    )

    assert time.monotonic() - started < 8  # a few seconds, on a loaded machine too
    assert result.response.status_code == 503
    assert result.response.headers["Retry-After"] == "5"
    assert result.errors == [
        {
            "message": "A service this request needs is unreachable; try again shortly.",
            "locations": [{"line": 2, "column": 3}],
            "path": ["addDocument"],
            "extensions": {"code": "SERVICE_UNAVAILABLE", "retryAfter": 5},
        }
    ]
    assert await Document.all().count() == 0
    # Its bytes may or may not have reached the store: the row stays for the reaper.
    assert await Blob.filter(stored=True).count() == 0


async def test_a_download_while_the_store_is_down_answers_503_with_retry_after(
    s3_client: httpx.AsyncClient, dead_client: httpx.AsyncClient
) -> None:
    alice = await make_patient()
    document_id = await add(
        s3_client, alice.token, LETTER, filename="l.txt", content_type="text/plain"
    )
    started = time.monotonic()

    response = await download(dead_client, document_id, alice.token)

    assert time.monotonic() - started < 8  # a few seconds, on a loaded machine too
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {
        "errors": [
            {
                "message": "A service this request needs is unreachable; try again shortly.",
                "extensions": {"code": "SERVICE_UNAVAILABLE", "retryAfter": 5},
            }
        ]
    }
    assert (await download(s3_client, document_id, alice.token)).content == LETTER
