from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from models.blobs import (
    BlobNotFound,
    BlobStore,
    FileBlobStore,
    MemoryBlobStore,
    StoredBlob,
    sniff_mime,
    validate_upload,
)
from models.errors import Invalid as BadUserInput
from models.errors import TooLarge as PayloadTooLarge

PDF_BYTES = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 16
JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 16
MB = 1024 * 1024


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


# Sniffing


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PDF_BYTES, "application/pdf"),
        (JPEG_BYTES, "image/jpeg"),
        (PNG_BYTES, "image/png"),
        (b"II*\x00\x08\x00\x00\x00", "image/tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "image/tiff"),
        (b"{\\rtf1\\ansi Bonjour}", "application/rtf"),
        (b"Ordonnance\r\n\tdoliprane 1 g\x0c\n", "text/plain"),
        ("Résultats : hémoglobine 13,5 g/dL ✓".encode(), "text/plain"),
        ("\ufeffavec BOM".encode(), "text/plain"),
        ("Lettre de liaison \u2013 cœur, 12 €".encode("cp1252"), "text/plain"),
        ("Comptes rendus : éèà".encode("latin-1"), "text/plain"),
        (b"", None),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", None),
        (b"MZ is printable but still a PE header", None),
        (b"\x7fELF\x02\x01\x01\x00", None),
        (b"PK\x03\x04\x14\x00\x06\x00", None),
        (b"\x1f\x8b\x08\x00", None),
        (b"GIF89a\x01\x00\x01\x00", None),
        (b"text with a NUL\x00 inside", None),
        (b"text with an escape \x1b[31m", None),
        (b"text with DEL \x7f", None),
        ("C1 control \u0085 in UTF-8".encode(), None),
        (b"undefined in cp1252: \x81", None),
        (b"#!/bin/sh\nrm -rf /\n", None),
        (b"  \n#!/usr/bin/env python\n", None),
        (b"<script>alert(1)</script>", None),
        (b"<!DOCTYPE html><html></html>", None),
        (b"<HTML><body>x</body></HTML>", None),
        (b"<?xml version='1.0'?><svg/>", None),
        (b"<svg onload=alert(1)>", None),
        ("\ufeff<html>".encode(), None),
    ],
)
def test_sniff_mime(data: bytes, expected: str | None) -> None:
    assert sniff_mime(data) == expected


def test_text_with_markup_after_the_start_is_refused() -> None:
    assert sniff_mime("Le patient a écrit <script> dans le formulaire".encode()) is None


def test_text_with_comparisons_and_bracketed_addresses_is_plain_text() -> None:
    text = "HbA1c < 7 %, CRP <5 mg/L, LDL<=1,0 g/L.\nDe : Dr Martin <martin@chu-lyon.fr>\n"

    assert sniff_mime(text.encode()) == "text/plain"


# Upload validation


def test_valid_upload_returns_the_sniffed_type() -> None:
    assert validate_upload(PDF_BYTES, declared_mime="application/pdf", max_bytes=MB) == (
        "application/pdf"
    )


@pytest.mark.parametrize("declared", [None, "", "application/octet-stream"])
def test_undeclared_type_is_taken_from_the_bytes(declared: str | None) -> None:
    assert validate_upload(PNG_BYTES, declared_mime=declared, max_bytes=MB) == "image/png"


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (JPEG_BYTES, "image/jpg"),
        (JPEG_BYTES, "IMAGE/JPEG"),
        (b"hello", "text/plain; charset=utf-8"),
        (b"{\\rtf1}", "text/rtf"),
    ],
)
def test_declared_type_aliases_and_parameters_match(data: bytes, declared: str) -> None:
    assert validate_upload(data, declared_mime=declared, max_bytes=MB) == sniff_mime(data)


def test_empty_upload_is_refused() -> None:
    with pytest.raises(BadUserInput) as exc_info:
        validate_upload(b"", declared_mime="application/pdf", max_bytes=MB, field="document")

    assert exc_info.value.message == "The file is empty."
    assert exc_info.value.field == "document"


def test_oversize_upload_is_refused_with_the_limit() -> None:
    with pytest.raises(PayloadTooLarge) as exc_info:
        validate_upload(PDF_BYTES + b"x" * (20 * MB), declared_mime=None, max_bytes=20 * MB)

    assert exc_info.value.message == "The file is larger than the 20 MB limit."
    assert exc_info.value.field == "file"


def test_upload_of_exactly_the_limit_is_accepted() -> None:
    data = PDF_BYTES + b"x" * (5 * MB - len(PDF_BYTES))

    assert validate_upload(data, declared_mime=None, max_bytes=5 * MB) == "application/pdf"


def test_fractional_limit_is_stated_in_mb() -> None:
    with pytest.raises(PayloadTooLarge) as exc_info:
        validate_upload(b"x" * MB, declared_mime=None, max_bytes=MB // 2)

    assert exc_info.value.message == "The file is larger than the 0.5 MB limit."


@pytest.mark.parametrize(
    "data",
    [
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00",
        b"\x7fELF\x02\x01\x01\x00\x00\x00",
        b"PK\x03\x04\x14\x00\x06\x00",
        b"text with a NUL\x00 inside",
    ],
)
def test_renamed_executable_or_binary_is_refused(data: bytes) -> None:
    with pytest.raises(BadUserInput) as exc_info:
        validate_upload(data, declared_mime="application/pdf", max_bytes=MB, field="file")

    assert exc_info.value.message == (
        "Unsupported file type: PDF, JPEG, PNG, TIFF, RTF or plain text is accepted."
    )
    assert exc_info.value.field == "file"


def test_declared_type_that_lies_is_refused() -> None:
    with pytest.raises(BadUserInput) as exc_info:
        validate_upload(PNG_BYTES, declared_mime="application/pdf", max_bytes=MB, field="f")

    assert exc_info.value.message == "The declared type does not match the content."
    assert exc_info.value.field == "f"


# File store


async def test_put_read_stream_and_delete(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = os.urandom(200_000)
    sha = hashlib.sha256(data).hexdigest()

    blob = await store.put(data)

    assert blob == StoredBlob(sha256=sha, size=200_000)
    assert files_under(tmp_path) == [tmp_path / sha[:2] / sha[2:4] / sha]
    assert await store.exists(sha)
    assert await store.read(sha) == data
    chunks = await collect(store.iter_chunks(sha, chunk_size=65536))
    assert [len(c) for c in chunks] == [65536, 65536, 65536, 3392]
    assert b"".join(chunks) == data

    await store.delete(sha)

    assert not await store.exists(sha)
    assert files_under(tmp_path) == []
    with pytest.raises(BlobNotFound):
        await store.read(sha)
    with pytest.raises(BlobNotFound):
        await collect(store.iter_chunks(sha))


async def test_put_is_idempotent(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)

    first = await store.put(b"same bytes")
    path = store.path(first.sha256)
    mtime = path.stat().st_mtime_ns
    second = await store.put(b"same bytes")

    assert second == first
    assert path.stat().st_mtime_ns == mtime
    assert len(files_under(tmp_path)) == 1


async def test_put_repairs_a_truncated_blob(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    blob = await store.put(b"complete content")
    store.path(blob.sha256).write_bytes(b"compl")

    await store.put(b"complete content")

    assert await store.read(blob.sha256) == b"complete content"


async def test_delete_is_idempotent(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)

    await store.delete("a" * 64)
    await store.delete("a" * 64)

    assert files_under(tmp_path) == []


async def test_failed_write_leaves_no_partial_or_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path)

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)

    with pytest.raises(OSError, match="disk full"):
        await store.put(b"document bytes")

    assert files_under(tmp_path) == []
    assert not await store.exists(hashlib.sha256(b"document bytes").hexdigest())


@pytest.mark.parametrize(
    "sha",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "a" * 63,
        "a" * 65,
        "A" * 64,
        "g" * 64,
        "aa/bb/" + "a" * 58,
        "a" * 64 + "\n",
    ],
)
async def test_malformed_blob_id_is_refused(tmp_path: Path, sha: str) -> None:
    store = FileBlobStore(tmp_path)

    with pytest.raises(ValueError):
        await store.read(sha)
    with pytest.raises(ValueError):
        await store.exists(sha)
    with pytest.raises(ValueError):
        await store.delete(sha)
    with pytest.raises(ValueError):
        store.iter_chunks(sha)


def test_stores_follow_the_protocol(tmp_path: Path) -> None:
    stores: list[BlobStore] = [FileBlobStore(tmp_path), MemoryBlobStore()]

    assert len(stores) == 2


# Memory store


async def test_memory_store_behaves_like_the_file_store() -> None:
    store = MemoryBlobStore()

    blob = await store.put(b"abcdefg")

    assert blob == StoredBlob(hashlib.sha256(b"abcdefg").hexdigest(), 7)
    assert await store.put(b"abcdefg") == blob
    assert await store.read(blob.sha256) == b"abcdefg"
    assert await collect(store.iter_chunks(blob.sha256, chunk_size=3)) == [b"abc", b"def", b"g"]
    await store.delete(blob.sha256)
    await store.delete(blob.sha256)
    assert not await store.exists(blob.sha256)
    with pytest.raises(BlobNotFound):
        await store.read(blob.sha256)
    with pytest.raises(ValueError):
        await store.read("../x")
