"""Document and attachment bytes: type sniffing, upload checks, a content-addressed store.

Rows (documents, attachments) keep a blob's SHA-256; the bytes live in a `BlobStore`.
The type of a file is decided from its bytes, never from what the client declares, and a
file that carries active content (markup, scripts, embedded objects) anywhere is refused.
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

from models.errors import Invalid, TooLarge

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
# Active content: bytes a browser, a shell or an office suite would run or render rather
# than show. Checked over the whole file, never only its start: a browser rendering a file
# as HTML (sniffing, or a careless proxy or viewer) reads every byte.
#
# Plain text and RTF carry prose, so they may hold no markup at all: nothing an HTML or XML
# tokenizer reads as a tag (`<` then an ASCII letter, `</x`, `<!` for doctypes, comments
# and CDATA, `<?` for XML declarations and PHP), case-insensitively, anywhere. The one
# exception is an e-mail address in angle brackets (`<jean.dupont@chu.fr>`, common in
# forwarded letters): its characters keep a tokenizer in the tag name, so it can carry no
# attribute and does nothing. Also refused anywhere: `javascript:` and `vbscript:` URLs,
# and `+ADw` (`<` in UTF-7, which old browsers sniffed). The cost is that a text writing
# markup-like notes without a space (`<LD` for "below the detection limit") is refused;
# `< LD` is accepted. The scans run on a lower-cased copy.
_TAG_OPEN = re.compile(r"<(?=/?[a-z]|[!?])(?![a-z0-9._%+-]+@[a-z0-9.-]+>)", re.ASCII)
_UTF7_LT = re.compile(r"\+ADw")  # on the original text: UTF-7 is case-sensitive
_SCRIPT_URL = re.compile(r"(?:java|vb)script\s*:")
# RTF can also embed OLE objects (`\object`, `\objdata`: the classic exploit carrier) and
# DDE fields that run commands when the document opens.
_RTF_ACTIVE = re.compile(
    r"\\obj[a-z]|\\fldinst\b.{0,200}?\bDDE(?:AUTO)?\b", re.IGNORECASE | re.ASCII | re.DOTALL
)
# A PDF cannot be held to "no markup": hex strings (`<a1b2>`), XMP metadata (`<x:xmpmeta>`,
# `<?xpacket`) and binary streams are legitimately full of `<`. Its streams cannot be
# skipped either: a browser rendering the file as HTML reads stream bytes as they are, and
# a stream's `/Filter` is whatever the author wrote. So a PDF is refused when its bytes
# anywhere hold what only an HTML document or an attack carries: an HTML doctype or
# document element, an element that runs script or loads, embeds, styles or redirects
# (script, iframe, object, meta, base, form, style…), any tag with an event-handler
# attribute (`<img src=x onerror=…>`, `<svg onload=…>`, namespaced tags included), or a
# `javascript:`/`vbscript:` URL. Element names have four letters or more (three-letter
# ones like `img`, `svg` are caught by their handlers), so that the random bytes of
# compressed streams match by chance about once in 10,000 PDFs of 20 MB (once in 200,000
# of 1 MB). The cost: a PDF whose XFA form keeps its `<script>` uncompressed (XFA is
# deprecated) is refused. Whatever passes, downloads are never rendered (see
# api/downloads.py: exact type, nosniff, attachment, CSP sandbox).
_PDF_HTML = re.compile(
    rb"<(?:!doctype\s+html|(?:html|head|body|script|iframe|frame|frameset|object|embed|applet"
    rb"|meta|base|link|style|form|math)[\s/>])"
)
# A tag with an event handler: from `<` and a letter (a tag an HTML tokenizer opens) to the
# handler, with no `>` (which closes the tag) nor another tag opening (which the next match
# starts from: the scan stays linear) in between.
_PDF_HANDLER = re.compile(rb"<[a-z][^<>]*(?:<(?![a-z])[^<>]*)*[\s/\"']on[a-z]{3,}\s*=")
_PDF_SCRIPT_URL = re.compile(rb"(?:java|vb)script\s*:")
# Prefilters that start with a literal: most files skip the slower scans above.
_PDF_HANDLER_HINT = re.compile(rb"on[a-z]{3,}\s*=")
_SCRIPT_HINT = b"script"
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


def _has_markup(text: str) -> bool:
    """Text or RTF that holds any markup (see `_TAG_OPEN`)."""
    lowered = text.lower()
    return bool(
        _TAG_OPEN.search(lowered)
        or _UTF7_LT.search(text)
        or ("script" in lowered and _SCRIPT_URL.search(lowered))
    )


def _pdf_has_html(data: bytes) -> bool:
    """A PDF that carries HTML (see `_PDF_HTML`)."""
    lowered = data.lower()
    return bool(
        _PDF_HTML.search(lowered)
        or (_SCRIPT_HINT in lowered and _PDF_SCRIPT_URL.search(lowered))
        or (_PDF_HANDLER_HINT.search(lowered) and _PDF_HANDLER.search(lowered))
    )


def sniff_mime(data: bytes) -> str | None:
    """One of the accepted MIME types, judged from the bytes, or None (also for a file
    that carries active content: see `_TAG_OPEN`, `_RTF_ACTIVE`, `_PDF_HTML`)."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            if mime == PDF and _pdf_has_html(data):
                return None
            if mime == RTF:
                # RTF is 7-bit with escapes; Latin-1 maps every byte, so nothing hides.
                rtf = data.decode("latin-1")
                if _has_markup(rtf) or _RTF_ACTIVE.search(rtf):
                    return None
            return mime
    if not data or data.startswith(_BINARY_MAGIC):
        return None
    text = _decode_text(data)
    if text is None or _CONTROL.search(text) or text.lstrip().startswith("#!") or _has_markup(text):
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
        raise Invalid("The file is empty.", field=field)
    if len(data) > max_bytes:
        raise TooLarge(
            f"The file is larger than the {_megabytes(max_bytes)} MB limit.", field=field
        )
    sniffed = sniff_mime(data)
    if sniffed is None:
        raise Invalid(
            "Unsupported file type: PDF, JPEG, PNG, TIFF, RTF or plain text is accepted.",
            field=field,
        )
    declared = _main_type(declared_mime or "")
    if declared not in _UNDECLARED and declared != sniffed:
        raise Invalid("The declared type does not match the content.", field=field)
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
