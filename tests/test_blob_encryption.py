"""Encryption at rest of document bytes: the segment format, the wrapped data keys, what a
stolen disk shows, legacy plain blobs, `blobs migrate|verify|rewrap`, the reaper, memory."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from api.config import ConfigError, Settings
from models.blob_crypto import (
    HEADER_SIZE,
    SEGMENT_SIZE,
    TAG_SIZE,
    BlobCorrupted,
    Decryptor,
    Keyring,
    UnknownMasterKey,
    decrypt,
    derive_master_key,
    encrypt,
    encrypted_size,
    key_id,
    new_data_key,
    parse_master_key,
)
from models.blobs import Blob, FileObjectStore
from models.document import Document
from resolvers.ids import encode
from tests.blob_support import cli, files_under, object_file, stored_contents
from tests.conftest import SECRET
from tests.factories import make_patient
from tests.test_documents import add, download, upload

SEALED = SEGMENT_SIZE + TAG_SIZE
LETTER = "Compte rendu : hémoglobine glyquée à 7,2 %, contrôle dans trois mois.\n".encode()


def sealed(data: bytes, key: bytes | None = None) -> tuple[bytes, bytes]:
    key = key or new_data_key()
    return key, b"".join(encrypt(key, data))


def text_of(size: int) -> bytes:
    """A plain-text document of `size` bytes (accepted by the upload checks)."""
    return (LETTER * (size // len(LETTER) + 1))[:size]


# --- the format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE + 7]
)
def test_a_blob_decrypts_to_its_bytes_whatever_its_size(size: int) -> None:
    data = os.urandom(size)

    key, blob = sealed(data)

    assert len(blob) == encrypted_size(size)
    assert decrypt(key, blob) == data


def test_decryption_takes_the_object_in_pieces_of_any_size() -> None:
    data = os.urandom(2 * SEGMENT_SIZE + 100)
    key, blob = sealed(data)
    decryptor = Decryptor(key)
    out: list[bytes] = []

    for start in range(0, len(blob), 1000):
        out.extend(decryptor.feed(blob[start : start + 1000]))
    out.append(decryptor.finish())

    assert b"".join(out) == data
    assert [len(part) for part in out] == [SEGMENT_SIZE, SEGMENT_SIZE, 100]


def _segments(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[HEADER_SIZE:]
    return blob[:HEADER_SIZE], [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1 :]


TAMPERING = {
    "a flipped ciphertext bit": lambda blob: _flip(blob, HEADER_SIZE + 10),
    "a flipped tag bit": lambda blob: _flip(blob, len(blob) - 1),
    "cut after a whole segment": lambda blob: blob[: HEADER_SIZE + 2 * SEALED],
    "cut inside a segment": lambda blob: blob[:-5],
    "a segment dropped": lambda blob: (
        _segments(blob)[0] + b"".join(_segments(blob)[1][:1] + _segments(blob)[1][2:])
    ),
    "two segments swapped": lambda blob: (
        _segments(blob)[0]
        + b"".join([_segments(blob)[1][1], _segments(blob)[1][0], *_segments(blob)[1][2:]])
    ),
    "a segment repeated at the end": lambda blob: blob + _segments(blob)[1][0],
    "another segment size": lambda blob: blob[:4] + struct.pack(">I", 32768) + blob[8:],
    "another nonce prefix": lambda blob: _flip(blob, 9),
    "not a blob at all": lambda blob: b"%PDF-1.4 in clear" + blob,
    "the header only": lambda blob: blob[:HEADER_SIZE],
}


@pytest.mark.parametrize("change", TAMPERING.values(), ids=TAMPERING.keys())
def test_an_altered_truncated_or_reordered_blob_does_not_decrypt(change: object) -> None:
    data = os.urandom(3 * SEGMENT_SIZE + 10)
    key, blob = sealed(data)
    assert callable(change)

    with pytest.raises(BlobCorrupted):
        decrypt(key, change(blob))


def test_a_blob_does_not_decrypt_under_another_data_key() -> None:
    _, blob = sealed(b"des octets")

    with pytest.raises(BlobCorrupted):
        decrypt(new_data_key(), blob)


def test_a_wrapped_data_key_unwraps_only_for_its_own_object_and_master_key() -> None:
    keyring = Keyring(os.urandom(32))
    data_key = new_data_key()

    kid, wrapped = keyring.wrap(data_key, "a" * 32)

    assert keyring.unwrap(kid, wrapped, "a" * 32) == data_key
    with pytest.raises(BlobCorrupted):
        keyring.unwrap(kid, wrapped, "b" * 32)  # copied onto another object's row
    with pytest.raises(UnknownMasterKey):
        Keyring(os.urandom(32)).unwrap(kid, wrapped, "a" * 32)


def test_master_keys_are_32_bytes_in_base64_or_hex() -> None:
    key = os.urandom(32)

    assert parse_master_key(base64.b64encode(key).decode()) == key
    assert parse_master_key(base64.urlsafe_b64encode(key).decode().rstrip("=")) == key
    assert parse_master_key(key.hex()) == key
    for wrong in ("", "short", base64.b64encode(os.urandom(16)).decode(), "z" * 64):
        with pytest.raises(ValueError):
            parse_master_key(wrong)


def test_settings_refuse_a_malformed_master_key_or_blob_url(tmp_path: Path) -> None:
    base = {"ENVIRONMENT": "test", "DATA_DIR": str(tmp_path), "SECRET_KEY": SECRET}

    with pytest.raises(ConfigError, match="BLOB_MASTER_KEY: a master key is 32 random bytes"):
        Settings.from_env({**base, "BLOB_MASTER_KEY": "too-short"})
    with pytest.raises(ConfigError, match="BLOB_OLD_MASTER_KEYS"):
        Settings.from_env({**base, "BLOB_OLD_MASTER_KEYS": f"{os.urandom(32).hex()},x"})
    with pytest.raises(ConfigError, match="BLOB_URL must be file://DIRECTORY or s3://BUCKET"):
        Settings.from_env({**base, "BLOB_URL": "ftp://example.org/blobs"})
    with pytest.raises(ConfigError, match="not a valid bucket name"):
        Settings.from_env({**base, "BLOB_URL": "s3://No_Such/prefix"})
    settings = Settings.from_env({**base, "BLOB_URL": "s3://espace-sante/prod"})
    assert settings.blob_location == "s3://espace-sante/prod"
    assert Settings.from_env(base).blob_location == f"file://{tmp_path / 'blobs'}"


# --- what the disk holds ------------------------------------------------------------------


async def test_an_uploaded_document_is_stored_encrypted_under_a_random_name(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    data = text_of(150_000)
    sha = hashlib.sha256(data).hexdigest()

    document_id = await add(client, alice.token, data, filename="cr.txt", content_type="text/plain")

    [path] = files_under(settings.blob_dir)
    stored = path.read_bytes()
    assert re.fullmatch(r"[0-9a-f]{32}", path.name)
    assert path.relative_to(settings.blob_dir).parts == ("objects", path.name[:2], path.name)
    assert sha not in str(path)
    assert len(stored) == encrypted_size(len(data))
    assert LETTER[:20] not in stored
    row = await Blob.get(sha256=sha)
    assert (row.name, row.size, row.stored) == (path.name, len(data), True)
    assert row.key_id == key_id(derive_master_key(SECRET))
    assert len(row.wrapped_key) == 12 + 32 + 16
    response = await download(client, document_id, alice.token)
    assert response.status_code == 200
    assert response.content == data


async def test_the_same_bytes_uploaded_twice_are_stored_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()

    await add(client, alice.token, LETTER, filename="a.txt", content_type="text/plain")
    await add(client, alice.token, LETTER, filename="b.txt", content_type="text/plain")

    assert len(files_under(settings.blob_dir)) == 1
    assert await Blob.all().count() == 1
    assert await stored_contents(settings) == [LETTER]


# --- memory -------------------------------------------------------------------------------


async def test_a_20_mib_file_is_written_and_read_back_without_a_second_copy_in_memory(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    store = settings.blob_store()
    data = os.urandom(20 * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()

    tracemalloc.start()
    try:
        await store.put(data)
        _, written_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest, size = hashlib.sha256(), 0
        async for chunk in await store.open(sha):
            digest.update(chunk)
            size += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (digest.hexdigest(), size) == (sha, len(data))
    assert written_peak < 4 * 1024 * 1024
    assert read_peak < 4 * 1024 * 1024


# --- blobs kept in clear before encryption at rest ---------------------------------------


async def _document_row(data: bytes) -> tuple[str, str]:
    """A document row for `data` (its bytes stored otherwise): (global id, holder's token)."""
    alice = await make_patient("Lina", "Ancien")
    row = await Document.create(
        patient_id=alice.patient.id,
        title="Ancien compte rendu",
        category="REPORT",
        date=alice.patient.birth_date,
        mime_type="text/plain",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        author_patient_id=alice.patient.id,
    )
    assert alice.token is not None
    return encode("Document", row.id), alice.token


async def _legacy_document(settings: Settings, data: bytes) -> tuple[str, str]:
    """A document whose bytes a previous version stored in clear (root/ab/cd/<sha256>)."""
    sha = hashlib.sha256(data).hexdigest()
    path = settings.blob_dir / sha[:2] / sha[2:4] / sha
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return await _document_row(data)


async def test_bytes_stored_in_clear_before_are_served_then_encrypted_by_migrate(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    data = text_of(70_000)
    sha = hashlib.sha256(data).hexdigest()
    document_id, token = await _legacy_document(settings, data)
    plain = settings.blob_dir / sha[:2] / sha[2:4] / sha

    served = await download(client, document_id, token)
    code, out, err = await cli(settings, "blobs", "migrate", "--to", f"file://{tmp_path / 'moved'}")

    assert served.status_code == 200
    assert served.content == data
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "encrypted (were in clear): 1",
        f"copied to file://{tmp_path / 'moved'}: 1",
        "already there: 0",
        f"done: set BLOB_URL=file://{tmp_path / 'moved'}, then run this once more from "
        f"file://{settings.blob_dir}",
    ]
    assert not plain.exists()
    assert [p.name for p in files_under(settings.blob_dir)] == [(await Blob.get()).name]
    assert data[:40] not in (await object_file(settings, data)).read_bytes()
    assert (await download(client, document_id, token)).content == data
    for url in (None, f"file://{tmp_path / 'moved'}"):
        code, out, err = await cli(settings, "blobs", "verify", *(["--url", url] if url else []))
        assert (code, err) == (0, ""), (url, out, err)
        assert out.endswith("1 blob(s) checked, 0 failed\n")


async def test_migrate_resumes_where_it_stopped(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    alice = await make_patient()
    for n in range(3):
        await add(
            client, alice.token, LETTER * (n + 1), filename="t.txt", content_type="text/plain"
        )
    target = tmp_path / "elsewhere"
    assert (await cli(settings, "blobs", "migrate", "--to", f"file://{target}"))[0] == 0
    lost = files_under(target)[0]
    lost.unlink()  # as if the first run had stopped before this one

    code, out, err = await cli(settings, "blobs", "migrate", "--to", f"file://{target}")

    assert (code, err) == (0, "")
    assert out.splitlines()[1:3] == [f"copied to file://{target}: 1", "already there: 2"]
    assert lost.exists()
    assert sorted(p.name for p in files_under(target)) == sorted(
        p.name for p in files_under(settings.blob_dir)
    )


async def test_migrate_refuses_the_store_in_use(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    code, out, err = await cli(settings, "blobs", "migrate", "--to", f"file://{settings.blob_dir}")

    assert (code, out, err) == (2, "", "error: --to is the store in use (BLOB_URL)\n")


# --- verify -------------------------------------------------------------------------------


async def test_verify_names_every_blob_that_is_missing_or_altered(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    kept, altered, lost = LETTER, LETTER * 2, LETTER * 3
    for data in (kept, altered, lost):
        await add(client, alice.token, data, filename="t.txt", content_type="text/plain")
    path = await object_file(settings, altered)
    raw = path.read_bytes()
    path.write_bytes(raw[:100] + bytes([raw[100] ^ 0x20]) + raw[101:])
    (await object_file(settings, lost)).unlink()

    code, out, err = await cli(settings, "blobs", "verify")

    assert code == 1
    assert sorted(err.splitlines()) == sorted(
        [
            f"failed: {hashlib.sha256(altered).hexdigest()}: does not decrypt "
            "(BlobCorrupted: final segment 0 does not authenticate)",
            f"failed: {hashlib.sha256(lost).hexdigest()}: missing",
        ]
    )
    assert out == f"file://{settings.blob_dir}: 3 blob(s) checked, 2 failed\n"


# --- rotation -----------------------------------------------------------------------------


async def test_a_new_master_key_rewraps_the_data_keys_without_rewriting_a_blob(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    await add(client, alice.token, LETTER, filename="t.txt", content_type="text/plain")
    path = await object_file(settings, LETTER)
    before = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)
    new_key = os.urandom(32)
    new = {"BLOB_MASTER_KEY": base64.b64encode(new_key).decode()}

    code, out, err = await cli(settings, "blobs", "rewrap", **new)

    assert (code, err) == (0, "")
    assert out == f"data keys rewrapped under {key_id(new_key)}: 1\n"
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino) == before
    row = await Blob.get()
    assert row.key_id == key_id(new_key)
    data_key = Keyring(new_key).unwrap(row.key_id, row.wrapped_key, row.name)
    assert decrypt(data_key, before[0]) == LETTER
    with pytest.raises(UnknownMasterKey):  # SECRET_KEY's key wraps nothing any more
        Keyring(derive_master_key(SECRET)).unwrap(row.key_id, row.wrapped_key, row.name)
    assert (await cli(settings, "blobs", "verify", **new))[0] == 0


async def test_a_retired_master_key_unwraps_until_the_rewrap_and_is_needed_until_then(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    first, second = os.urandom(32).hex(), os.urandom(32).hex()
    env = {"ENVIRONMENT": "test", "DATA_DIR": str(settings.data_dir), "SECRET_KEY": SECRET}
    await Settings.from_env({**env, "BLOB_MASTER_KEY": first}).blob_store().put(LETTER)
    await _document_row(LETTER)
    sha = hashlib.sha256(LETTER).hexdigest()
    rotated = {"BLOB_MASTER_KEY": second, "BLOB_OLD_MASTER_KEYS": first}

    without_old = await cli(settings, "blobs", "verify", BLOB_MASTER_KEY=second)
    rewrapped = await cli(settings, "blobs", "rewrap", **rotated)
    after = await cli(settings, "blobs", "verify", BLOB_MASTER_KEY=second)

    assert without_old[0] == 1
    assert without_old[2] == (
        f"failed: {sha}: does not decrypt (UnknownMasterKey: {key_id(bytes.fromhex(first))})\n"
    )
    assert rewrapped[:2] == (0, f"data keys rewrapped under {key_id(bytes.fromhex(second))}: 1\n")
    assert after[0] == 0
    assert (await Blob.get()).key_id == key_id(bytes.fromhex(second))


# --- the reaper ---------------------------------------------------------------------------


async def test_run_jobs_reaps_bytes_no_row_refers_to_once_the_grace_period_is_over(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    await add(client, alice.token, LETTER, filename="t.txt", content_type="text/plain")
    # Bytes whose document never committed (a crash between the two).
    await settings.blob_store().put(LETTER * 2)
    kept = await object_file(settings, LETTER)
    orphan = await object_file(settings, LETTER * 2)
    soon = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()

    within_grace = await cli(settings, "run-jobs", "--now", soon)
    assert "blobs_reaped: 0" in within_grace[1].splitlines()
    assert orphan.exists()

    after_grace = await cli(settings, "run-jobs", "--now", later)

    assert "blobs_reaped: 1" in after_grace[1].splitlines()
    assert not orphan.exists()
    assert kept.exists()
    assert await Blob.filter(sha256=hashlib.sha256(LETTER * 2).hexdigest()).count() == 0
    assert await stored_contents(settings) == [LETTER]


async def test_a_failed_upload_whose_cleanup_failed_too_is_reaped(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await make_patient()

    async def cleanup_fails(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("the database went away")

    async def insert_fails(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("the database went away")

    monkeypatch.setattr(Document, "create", insert_fails)
    monkeypatch.setattr("models.document.release_blob", cleanup_fails)
    result = await upload(client, alice.token, LETTER, filename="t.txt", content_type="text/plain")
    monkeypatch.undo()

    assert result.response.status_code == 503
    assert result.codes == ["SERVICE_UNAVAILABLE"]
    assert result.response.headers["Retry-After"] == "5"
    assert await Document.all().count() == 0
    assert await stored_contents(settings) == [LETTER]  # bytes left behind, for now
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    code, out, _ = await cli(settings, "run-jobs", "--now", later)
    assert code == 0
    assert "blobs_reaped: 1" in out.splitlines()
    assert files_under(settings.blob_dir) == []
    assert await Blob.all().count() == 0


def test_the_file_store_refuses_names_that_are_not_object_names(tmp_path: Path) -> None:
    store = FileObjectStore(tmp_path)

    for name in ("../../etc/passwd", "/etc/passwd", "a" * 31, "A" * 32, "a" * 64, "a" * 32 + "\n"):
        with pytest.raises(ValueError):
            store.path(name)
    for sha in ("../x", "a" * 63, "g" * 64):
        with pytest.raises(ValueError):
            store.legacy_path(sha)
