"""`espace-sante blobs migrate`: every blob from the local directory to S3, the service moved
over, then back to a directory; `blobs verify` clean on each side, documents served by each."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import httpx

from api.app import create_app
from api.config import Settings
from models.blobs import Blob
from tests.blob_support import cli, files_under
from tests.factories import make_patient
from tests.seaweed import ACCESS_KEY, REGION, SECRET_KEY, Seaweed
from tests.test_documents import add, download

FILES = [
    ("cr.txt", "text/plain", b"Compte rendu : tout va bien.\n" * 5000),
    (
        "ordonnance.pdf",
        "application/pdf",
        b"%PDF-1.4\n% ordonnance\n" + b"0" * 200_000 + b"\n%%EOF\n",
    ),
    ("radio.png", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x07" * 70_000),
]


async def served(settings: Settings, documents: list[str], token: str) -> list[bytes]:
    """The bytes of each document, downloaded from an app running on `settings`."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answers = [await download(http, document, token) for document in documents]
    assert [a.status_code for a in answers] == [200] * len(answers)
    return [a.content for a in answers]


async def test_blobs_migrate_to_s3_and_back_then_verify_clean(
    client: httpx.AsyncClient, settings: Settings, weed: Seaweed, tmp_path: Path
) -> None:
    alice = await make_patient()
    assert alice.token is not None
    documents = [
        await add(client, alice.token, data, filename=name, content_type=mime)
        for name, mime, data in FILES
    ]
    contents = [data for _, _, data in FILES]
    s3 = weed.env("migrated")
    s3_url = s3.pop("BLOB_URL")
    back = f"file://{tmp_path / 'back'}"

    there = await cli(settings, "blobs", "migrate", "--to", s3_url, **s3)
    verified_there = await cli(settings, "blobs", "verify", "--url", s3_url, **s3)
    on_s3 = replace(
        settings,
        blob_url=s3_url,
        s3_endpoint_url=s3["S3_ENDPOINT_URL"],
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
        s3_region=REGION,
    )
    store = on_s3.blob_store()
    from_s3 = [await store.read(hashlib.sha256(c).hexdigest()) for c in contents]
    await store.aclose()
    home = await cli(settings, "blobs", "migrate", "--to", back, BLOB_URL=s3_url, **s3)
    verified_home = await cli(settings, "blobs", "verify", "--url", back, **s3)

    assert there[0] == 0, there
    assert there[1].splitlines()[:3] == [
        "encrypted (were in clear): 0",
        f"copied to {s3_url}: 3",
        "already there: 0",
    ]
    assert verified_there == (0, f"{s3_url}: 3 blob(s) checked, 0 failed\n", "")
    assert from_s3 == contents
    assert home[0] == 0, home
    assert home[1].splitlines()[1:3] == [f"copied to {back}: 3", "already there: 0"]
    assert verified_home == (0, f"{back}: 3 blob(s) checked, 0 failed\n", "")
    names = sorted(row.name for row in await Blob.all())
    assert sorted(key.rsplit("/", 1)[1] for key in await weed.keys("migrated")) == names
    assert sorted(p.name for p in files_under(tmp_path / "back")) == names
    assert sorted(p.name for p in files_under(settings.blob_dir)) == names
    assert {hashlib.sha256(c).hexdigest() for c in contents} == {r.sha256 for r in await Blob.all()}
    # Last, for its lifespan closes the database connections of the test: the app on the
    # directory the blobs came back to serves every document.
    assert await served(replace(settings, blob_url=back), documents, alice.token) == contents
