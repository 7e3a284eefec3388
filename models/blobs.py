"""Document and attachment bytes: type sniffing, upload checks, a content-addressed store.

Rows (documents, attachments) keep a blob's SHA-256; the bytes live in a `BlobStore`.
The type of a file is decided from its bytes, never from what the client declares.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
import anyio.to_thread

from api.errors import BadUserInput, PayloadTooLarge

PDF = "application/pdf"
JPEG = "image/jpeg"
PNG = "image/png"
TIFF = "image/tiff"
RTF = "application/rtf"
TEXT = "text/plain"
ACCEPTED_MIME_TYPES = frozenset({PDF, JPEG, PNG, TIFF, RTF, TEXT})

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", PDF),
    (b"\xff\xd8\xff", JPEG),
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"II*\x00", TIFF),
    (b"MM\x00*", TIFF),
    (b"{\\rtf", RTF),
)
# Executables and archives. Their bytes nearly always fail the text test anyway; naming
# them makes the refusal explicit rather than a side effect of a NUL byte.
_BINARY_MAGIC = (
    b"MZ",  # Windows PE
    b"\x7fELF",
    b"PK\x03\x04",  # zip, and so docx, jar, apk
    b"\xca\xfe\xba\xbe",  # Java class, Mach-O fat
    b"\xfe\xed\xfa",  # Mach-O
    b"\xcf\xfa\xed\xfe",  # Mach-O 64-bit
    b"\x1f\x8b",  # gzip
    b"Rar!",
    b"7z\xbc\xaf",
)
# Text a browser or a shell would run or render rather than show: a shebang script, or
# markup (HTML, SVG, XML, PHP). Refused even though it is technically plain text.
_ACTIVE_TEXT = re.compile(
    r"(?:#!|<script|<html|<!doctype|<\?php|<\?xml|<svg|<body|<head|<iframe)", re.IGNORECASE
)
# C0 controls other than tab, LF, FF, CR; DEL; C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")

_MIME_ALIASES = {
    "image/jpg": JPEG,
    "image/pjpeg": JPEG,
    "image/x-png": PNG,
    "image/tif": TIFF,
    "text/rtf": RTF,
    "application/x-rtf": RTF,
    "application/x-pdf": PDF,
}
_UNDECLARED = frozenset({"", "application/octet-stream"})


def _decode_text(data: bytes) -> str | None:
    """UTF-8 (BOM allowed), else Windows-1252: the two encodings French text files use.

    Windows-1252 is Latin-1 with printable characters (curly quotes, œ, €) where Latin-1 has C1
    controls; bytes it leaves undefined make the file non-text. UTF-16 is not accepted
    (its NUL bytes cannot be told apart from binary data cheaply).
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return None


def sniff_mime(data: bytes) -> str | None:
    """One of the accepted MIME types, judged from the bytes, or None."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if not data or data.startswith(_BINARY_MAGIC):
        return None
    text = _decode_text(data)
    if text is None or _CONTROL.search(text) or _ACTIVE_TEXT.match(text.lstrip()):
        return None
    return TEXT


def _main_type(mime: str) -> str:
    main = mime.split(";", 1)[0].strip().lower()
    return _MIME_ALIASES.get(main, main)


def _megabytes(size: int) -> str:
    mb = size / (1024 * 1024)
    return f"{int(mb)}" if mb.is_integer() else f"{mb:.3g}"


def validate_upload(
    data: bytes, *, declared_mime: str | None, max_bytes: int, field: str = "file"
) -> str:
    """The sniffed MIME type of an upload, or the reason it is refused."""
    if not data:
        raise BadUserInput("The file is empty.", field=field)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"The file is larger than the {_megabytes(max_bytes)} MB limit.", field=field
        )
    sniffed = sniff_mime(data)
    if sniffed is None:
        raise BadUserInput(
            "Unsupported file type: PDF, JPEG, PNG, TIFF, RTF or plain text is accepted.",
            field=field,
        )
    declared = _main_type(declared_mime or "")
    if declared not in _UNDECLARED and declared != sniffed:
        raise BadUserInput("The declared type does not match the content.", field=field)
    return sniffed


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


class BlobNotFound(LookupError):
    """No blob with this SHA-256: a row points to bytes that are gone."""


class BlobStore(Protocol):
    async def put(self, data: bytes) -> StoredBlob: ...

    async def read(self, sha256: str) -> bytes: ...

    def iter_chunks(self, sha256: str, chunk_size: int = 65536) -> AsyncIterator[bytes]: ...

    async def exists(self, sha256: str) -> bool: ...

    async def delete(self, sha256: str) -> None: ...


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _checked(sha256: str) -> str:
    # Also what keeps "../" and absolute paths out of the store's directory.
    if not _SHA256.fullmatch(sha256):
        raise ValueError("a blob id is 64 lower-case hexadecimal characters")
    return sha256


class FileBlobStore:
    """Blobs as files under `root/ab/cd/<sha256>`, written atomically.

    Content addressing makes `put` idempotent and lets rows share bytes (the same PDF
    saved from a message into the dossier is stored once). The store does not count
    references: before `delete`, the caller makes sure no row still points to the blob.
    Empty fan-out directories are left in place, so a `put` racing a `delete` never
    loses its directory.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        sha256 = _checked(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put(self, data: bytes) -> StoredBlob:
        return await anyio.to_thread.run_sync(self._put, data)

    def _put(self, data: bytes) -> StoredBlob:
        blob = StoredBlob(hashlib.sha256(data).hexdigest(), len(data))
        final = self.path(blob.sha256)
        with contextlib.suppress(FileNotFoundError):
            if final.stat().st_size == blob.size:
                return blob
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{blob.sha256}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_directory(final.parent)
        return blob

    async def read(self, sha256: str) -> bytes:
        path = self.path(sha256)
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None

    def iter_chunks(self, sha256: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """The blob in chunks, for streaming responses; the id is checked before streaming."""
        return self._chunks(self.path(sha256), chunk_size)

    async def _chunks(self, path: Path, chunk_size: int) -> AsyncIterator[bytes]:
        try:
            file = await anyio.open_file(path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(path.name) from None
        async with file:
            while chunk := await file.read(chunk_size):
                yield chunk

    async def exists(self, sha256: str) -> bool:
        return await anyio.to_thread.run_sync(self.path(sha256).is_file)

    async def delete(self, sha256: str) -> None:
        path = self.path(sha256)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); not possible on every platform."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MemoryBlobStore:
    """The same interface in a dict, for tests."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put(self, data: bytes) -> StoredBlob:
        blob = StoredBlob(hashlib.sha256(data).hexdigest(), len(data))
        self.blobs.setdefault(blob.sha256, bytes(data))
        return blob

    async def read(self, sha256: str) -> bytes:
        try:
            return self.blobs[_checked(sha256)]
        except KeyError:
            raise BlobNotFound(sha256) from None

    async def iter_chunks(self, sha256: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        data = await self.read(sha256)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    async def exists(self, sha256: str) -> bool:
        return _checked(sha256) in self.blobs

    async def delete(self, sha256: str) -> None:
        self.blobs.pop(_checked(sha256), None)
