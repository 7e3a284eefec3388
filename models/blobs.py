"""Document and attachment bytes: type sniffing, upload checks, an encrypted store.

Rows (documents, attachments) keep a blob's SHA-256; the bytes live in a `BlobStore`,
encrypted (models/blob_crypto.py) in a directory or an S3-compatible bucket.
The type of a file is decided from its bytes, never from what the client declares, and a
file that carries active content (markup, scripts, embedded objects) anywhere is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
from tortoise import fields
from tortoise.models import Model

from models.blob_crypto import Decryptor, Keyring, encrypt, new_data_key
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


# --- stores -------------------------------------------------------------------------------
#
# Rows (documents, attachments) name their bytes by SHA-256 and share identical bytes; a
# `BlobStore` keeps them encrypted (models/blob_crypto.py) in an `ObjectStore` (a directory,
# an S3 bucket, a dict in tests) under random names. The `blob` table maps a SHA-256 to its
# object and holds the object's data key, wrapped by the master key.


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


class BlobNotFound(LookupError):
    """No bytes for this SHA-256 (or object name): a row points to bytes that are gone."""


class StoreUnavailable(OSError):
    """The object store cannot be reached or does not answer in time: try again later
    (SERVICE_UNAVAILABLE at the edge). An OSError, as a failing disk is: code that releases
    bytes after a commit logs it and leaves the rest to the reaper."""


_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[0-9a-f]{32}")


def _checked(sha256: str) -> str:
    # Also what keeps "../" and absolute paths out of a store's directory.
    if not _SHA256.fullmatch(sha256):
        raise ValueError("a blob id is 64 lower-case hexadecimal characters")
    return sha256


def _checked_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError("an object name is 32 lower-case hexadecimal characters")
    return name


Chunks = Iterable[bytes] | AsyncIterable[bytes]


async def _each(chunks: Chunks) -> AsyncIterator[bytes]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


class ObjectStore(Protocol):
    """Opaque objects by name: where the ciphertext of blobs lives."""

    url: str

    async def write(self, name: str, chunks: Chunks) -> None:
        """Store the object whole, or nothing (a failed write leaves no partial object)."""

    async def open(self, name: str) -> AsyncIterator[bytes]:
        """The object's bytes; reaching the object happens here, before the first chunk is
        asked for (raises BlobNotFound, StoreUnavailable)."""

    async def size(self, name: str) -> int | None:
        """The object's size, None when it does not exist."""

    async def delete(self, name: str) -> None:
        """Remove the object; no error when it does not exist."""

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    async def aclose(self) -> None: ...


class FileObjectStore:
    """Objects as files under `root/objects/ab/<name>`, written to a temporary file, synced,
    then renamed: a reader never sees half an object.

    Before encryption at rest, blobs were kept in clear as `root/ab/cd/<sha256>`: those are
    still served (`legacy_*`) until `espace-sante blobs migrate` encrypts them.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root}"

    def path(self, name: str) -> Path:
        name = _checked_name(name)
        return self.root / "objects" / name[:2] / name

    async def write(self, name: str, chunks: Chunks) -> None:
        final = self.path(name)
        if isinstance(chunks, AsyncIterable):
            await self._write_async(final, chunks)
        else:
            # Encryption runs in the worker thread with the writes, off the event loop.
            await anyio.to_thread.run_sync(self._write_sync, final, chunks)

    def _write_sync(self, final: Path, chunks: Iterable[bytes]) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_directory(final.parent)

    async def _write_async(self, final: Path, chunks: AsyncIterable[bytes]) -> None:
        await anyio.to_thread.run_sync(lambda: final.parent.mkdir(parents=True, exist_ok=True))
        fd, tmp = await anyio.to_thread.run_sync(
            lambda: tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        )
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    await anyio.to_thread.run_sync(f.write, chunk)
                await anyio.to_thread.run_sync(f.flush)
                await anyio.to_thread.run_sync(os.fsync, f.fileno())
            await anyio.to_thread.run_sync(os.replace, tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        await anyio.to_thread.run_sync(_fsync_directory, final.parent)

    async def open(self, name: str) -> AsyncIterator[bytes]:
        return await self._open_path(self.path(name))

    async def _open_path(self, path: Path) -> AsyncIterator[bytes]:
        try:
            file = await anyio.open_file(path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(path.name) from None
        return self._chunks(file)

    @staticmethod
    async def _chunks(file: anyio.AsyncFile[bytes]) -> AsyncIterator[bytes]:
        async with file:
            while chunk := await file.read(256 * 1024):
                yield chunk

    async def size(self, name: str) -> int | None:
        path = self.path(name)

        def stat() -> int | None:
            try:
                return path.stat().st_size
            except FileNotFoundError:
                return None

        return await anyio.to_thread.run_sync(stat)

    async def delete(self, name: str) -> None:
        path = self.path(name)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    async def ping(self) -> None:
        def check() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise StoreUnavailable(f"{self.root} is not writable")

        try:
            await anyio.to_thread.run_sync(check)
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def aclose(self) -> None:
        return None

    # Blobs stored in clear before encryption at rest.

    def legacy_path(self, sha256: str) -> Path:
        sha256 = _checked(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def legacy_exists(self, sha256: str) -> bool:
        return await anyio.to_thread.run_sync(self.legacy_path(sha256).is_file)

    async def legacy_open(self, sha256: str) -> AsyncIterator[bytes]:
        return await self._open_path(self.legacy_path(sha256))

    async def legacy_delete(self, sha256: str) -> None:
        path = self.legacy_path(sha256)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    async def legacy_digests(self) -> list[str]:
        """The SHA-256 of every blob still kept in clear."""

        def walk() -> list[str]:
            found = []
            for first in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
                for path in sorted(first.glob("[0-9a-f][0-9a-f]/*")):
                    if _SHA256.fullmatch(path.name) and path.name.startswith(
                        first.name + path.parent.name
                    ):
                        found.append(path.name)
            return found

        return await anyio.to_thread.run_sync(walk)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); not possible on every platform."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MemoryObjectStore:
    """The same interface in a dict, for tests."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.url = "memory://"

    async def write(self, name: str, chunks: Chunks) -> None:
        parts = [chunk async for chunk in _each(chunks)]
        self.objects[_checked_name(name)] = b"".join(parts)

    async def open(self, name: str) -> AsyncIterator[bytes]:
        try:
            data = self.objects[_checked_name(name)]
        except KeyError:
            raise BlobNotFound(name) from None

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        return chunks()

    async def size(self, name: str) -> int | None:
        data = self.objects.get(_checked_name(name))
        return None if data is None else len(data)

    async def delete(self, name: str) -> None:
        self.objects.pop(_checked_name(name), None)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class S3Location:
    """Where an S3-compatible store is and how to sign in (BLOB_URL, S3_*)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str | None = None

    def __repr__(self) -> str:  # no secret in logs
        return f"S3Location(bucket={self.bucket!r}, prefix={self.prefix!r})"


# A PUT of one part at most this large; above it, a multipart upload of parts this size (the
# S3 minimum is 5 MiB). One part is the most an upload holds besides the file itself.
S3_PART_SIZE = 8 * 1024 * 1024
# Bounds on each S3 call, so that a dead or frozen store answers SERVICE_UNAVAILABLE within
# seconds: connecting, each read of the answer, and one retry (a pooled connection the server
# closed meanwhile is the usual reason for a first failure); over all that, a deadline per
# call, longer for a call that sends a part (at 1 MB/s at least).
S3_CONNECT_TIMEOUT = 2.0
S3_READ_TIMEOUT = 3.0
S3_ATTEMPTS = 2
S3_CALL_DEADLINE = 8.0
S3_MIN_THROUGHPUT = 1_000_000  # bytes per second
# Once the store failed to answer, calls fail at once for this long instead of each waiting
# for its own timeouts: during an outage every request is refused promptly.
S3_COOL_DOWN = 3.0


class S3ObjectStore:
    """Objects in an S3 bucket (AWS or any compatible server: SeaweedFS, MinIO, Ceph…),
    through aiobotocore. One client per store, made on first use in the running loop."""

    def __init__(self, location: S3Location) -> None:
        self.location = location
        self.url = f"s3://{location.bucket}" + (f"/{location.prefix}" if location.prefix else "")
        self._client: Any = None
        self._exit: contextlib.AsyncExitStack | None = None
        self._lock: asyncio.Lock | None = None
        self._down_until = 0.0

    def key(self, name: str) -> str:
        name = _checked_name(name)
        return f"{self.location.prefix}/{name}" if self.location.prefix else name

    async def client(self) -> Any:
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                from aiobotocore.session import get_session
                from botocore.config import Config
                from botocore.handlers import add_expect_header

                location = self.location
                config = Config(
                    connect_timeout=S3_CONNECT_TIMEOUT,
                    read_timeout=S3_READ_TIMEOUT,
                    retries={"total_max_attempts": S3_ATTEMPTS, "mode": "standard"},
                    # Checksums only where S3 requires them: not every compatible server
                    # understands the newer trailing-checksum uploads.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    s3={"addressing_style": "path" if location.endpoint_url else "auto"},
                )
                stack = contextlib.AsyncExitStack()
                client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3",
                        endpoint_url=location.endpoint_url,
                        aws_access_key_id=location.access_key_id,
                        aws_secret_access_key=location.secret_access_key,
                        region_name=location.region or "us-east-1",
                        config=config,
                    )
                )
                # No `Expect: 100-continue` on uploads: aiohttp waits for the 100 with no
                # timeout, so a frozen server would hang the upload for good.
                client.meta.events.unregister("before-call.s3", add_expect_header)
                self._client, self._exit = client, stack
        return self._client

    async def aclose(self) -> None:
        if self._exit is not None:
            exit_stack, self._exit, self._client = self._exit, None, None
            await exit_stack.aclose()

    async def _call(self, operation: str, name: str, *, sending: int = 0, **params: Any) -> Any:
        """One S3 call, bounded, its failures translated (see `_translated`)."""
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("object store unreachable (a moment ago)")
        client = await self.client()
        try:
            async with _translated(name):
                with anyio.fail_after(S3_CALL_DEADLINE + sending / S3_MIN_THROUGHPUT):
                    return await getattr(client, operation)(Bucket=self.location.bucket, **params)
        except StoreUnavailable:
            self._down_until = time.monotonic() + S3_COOL_DOWN
            raise

    async def write(self, name: str, chunks: Chunks) -> None:
        key = self.key(name)
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in _each(chunks):
                buffer += chunk
                if len(buffer) >= S3_PART_SIZE:
                    if upload_id is None:
                        created = await self._call("create_multipart_upload", name, Key=key)
                        upload_id = created["UploadId"]
                    body, buffer = bytes(buffer[:S3_PART_SIZE]), buffer[S3_PART_SIZE:]
                    parts.append(await self._part(name, upload_id, len(parts), body))
            if upload_id is None:
                body = bytes(buffer)
                await self._call("put_object", name, sending=len(body), Key=key, Body=body)
                return
            if buffer:
                parts.append(await self._part(name, upload_id, len(parts), bytes(buffer)))
            await self._call(
                "complete_multipart_upload",
                name,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            if upload_id is not None:
                # Best effort: a bucket lifecycle rule (AbortIncompleteMultipartUpload)
                # removes the parts of an upload this could not abort.
                with contextlib.suppress(Exception):
                    await self._call("abort_multipart_upload", name, Key=key, UploadId=upload_id)
            raise

    async def _part(self, name: str, upload_id: str, index: int, body: bytes) -> dict[str, Any]:
        answer = await self._call(
            "upload_part",
            name,
            sending=len(body),
            Key=self.key(name),
            UploadId=upload_id,
            PartNumber=index + 1,
            Body=body,
        )
        return {"PartNumber": index + 1, "ETag": answer["ETag"]}

    async def open(self, name: str) -> AsyncIterator[bytes]:
        answer = await self._call("get_object", name, Key=self.key(name))
        return self._body(answer["Body"], name)

    async def _body(self, body: Any, name: str) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    async with _translated(name):
                        chunk = await body.read(256 * 1024)
                except StoreUnavailable:
                    self._down_until = time.monotonic() + S3_COOL_DOWN
                    raise
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def size(self, name: str) -> int | None:
        try:
            answer = await self._call("head_object", name, Key=self.key(name))
        except BlobNotFound:
            return None
        return int(answer["ContentLength"])

    async def delete(self, name: str) -> None:
        await self._call("delete_object", name, Key=self.key(name))

    async def ping(self) -> None:
        """Always asks the store (a readiness probe is also how it is seen to be back)."""
        self._down_until = 0.0
        await self._call("head_bucket", self.location.bucket)


_UNAVAILABLE_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
)


@contextlib.asynccontextmanager
async def _translated(name: str) -> AsyncIterator[None]:
    """S3 failures as this module's: a missing object BlobNotFound, an unreachable, slow or
    overloaded server StoreUnavailable; anything else (a refused signature, a missing
    bucket: configuration) as it is."""
    from aiohttp import ClientError as HTTPError
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = str(error.get("Code", ""))
        if code in {"NoSuchKey", "404", "NotFound"}:
            raise BlobNotFound(name) from None
        if code in _UNAVAILABLE_CODES or status >= 500:
            raise StoreUnavailable(f"object store: {code or status}") from exc
        raise
    except (BotoConnectionError, HTTPClientError, HTTPError, TimeoutError, OSError) as exc:
        raise StoreUnavailable(f"object store unreachable: {type(exc).__name__}") from exc


# --- the index of blobs, and the encrypted store ------------------------------------------


class Blob(Model):
    """One stored object: the SHA-256 of its plaintext, its random name (the id's hex), its
    data key wrapped by the master key `key_id`.

    Written before the object; `stored` once the object is complete. `touched_at` is the
    last time an upload wrote or reused it: the reaper (models/blob_maintenance.py) removes
    what no document or attachment refers to once it is older than a grace period, so an
    upload whose row never committed leaves nothing behind for long.
    """

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    created_at = fields.DatetimeField(auto_now_add=True)
    sha256 = fields.CharField(max_length=64, db_index=True)
    size = fields.BigIntField()
    key_id = fields.CharField(max_length=16)
    wrapped_key = fields.BinaryField()
    stored = fields.BooleanField(default=False)
    touched_at = fields.DatetimeField()

    class Meta:
        table = "blob"
        table_description = "Encrypted document and attachment bytes: object, wrapped key."

    @property
    def name(self) -> str:
        return self.id.hex


def _now() -> datetime:
    return datetime.now(UTC)


# Far in the past: a row released on purpose is the reaper's at once if its object could
# not be removed.
_RELEASED = datetime(2000, 1, 1, tzinfo=UTC)


class BlobStore:
    """Bytes by SHA-256, encrypted under a data key of their own, in an object store.

    Content addressing lets rows share bytes (the same PDF saved from a message into the
    dossier is stored once); the store does not count references: before `delete`, the
    caller makes sure no row still points to the bytes. `put` writes the object before it
    returns, so a row committed after it never points to missing bytes.
    """

    def __init__(self, objects: ObjectStore, keyring: Keyring) -> None:
        self.objects = objects
        self.keyring = keyring

    def __repr__(self) -> str:
        return f"BlobStore({self.objects.url})"

    @property
    def url(self) -> str:
        return self.objects.url

    async def put(self, data: bytes) -> StoredBlob:
        blob = StoredBlob(hashlib.sha256(data).hexdigest(), len(data))
        if await self._reuse(blob.sha256):
            return blob
        data_key = new_data_key()
        row = Blob(id=uuid.uuid4(), sha256=blob.sha256, size=blob.size, touched_at=_now())
        row.key_id, row.wrapped_key = self.keyring.wrap(data_key, row.name)
        await row.save(force_create=True)
        try:
            await self.objects.write(row.name, encrypt(data_key, data))
        except StoreUnavailable:
            raise  # nothing to clean now; the row tells the reaper to, once the store is back
        except BaseException:
            await self._forget(row)
            raise
        await Blob.filter(id=row.id).update(stored=True, touched_at=_now())
        return blob

    async def _reuse(self, sha256: str) -> bool:
        """Bytes already stored: claimed for this upload by moving `touched_at`, which keeps
        the reaper away (it only takes rows untouched for its grace period)."""
        for row_id in await self._stored_ids(sha256):
            if await Blob.filter(id=row_id, stored=True).update(touched_at=_now()):
                return True
        return False

    @staticmethod
    async def _stored_ids(sha256: str) -> list[uuid.UUID]:
        rows = Blob.filter(sha256=_checked(sha256), stored=True).order_by("created_at")
        return [row.id for row in await rows.only("id")]

    async def _forget(self, row: Blob) -> None:
        """After a failed write: the object and the row if possible, else the row is left
        for the reaper (which retries both)."""
        with contextlib.suppress(Exception):
            await self.objects.delete(row.name)
            await Blob.filter(id=row.id, stored=False).delete()

    async def _row(self, sha256: str) -> Blob | None:
        return (
            await Blob.filter(sha256=_checked(sha256), stored=True).order_by("created_at").first()
        )

    async def exists(self, sha256: str) -> bool:
        if await Blob.filter(sha256=_checked(sha256), stored=True).exists():
            return True
        return await self._legacy_exists(sha256)

    async def open(self, sha256: str) -> AsyncIterator[bytes]:
        """The plaintext in segments (64 KiB), the object reached before this returns: a
        missing or unreachable one raises here, before a response has started."""
        row = await self._row(sha256)
        if row is None:
            if isinstance(self.objects, FileObjectStore) and await self._legacy_exists(sha256):
                return await self.objects.legacy_open(sha256)
            raise BlobNotFound(sha256)
        data_key = self.keyring.unwrap(row.key_id, row.wrapped_key, row.name)
        return _decrypted(await self.objects.open(row.name), data_key)

    def iter_chunks(self, sha256: str) -> AsyncIterator[bytes]:
        """`open`, deferred to the first chunk (the id is checked at once)."""
        return self._deferred(_checked(sha256))

    async def _deferred(self, sha256: str) -> AsyncIterator[bytes]:
        async for chunk in await self.open(sha256):
            yield chunk

    async def read(self, sha256: str) -> bytes:
        return b"".join([chunk async for chunk in await self.open(sha256)])

    async def delete(self, sha256: str) -> None:
        """Release the bytes (no row refers to them any more). Each object is first taken
        out of use, then removed, then its row: if the store fails half-way, the reaper
        finishes the job."""
        for row in await Blob.filter(sha256=_checked(sha256)).only("id"):
            await Blob.filter(id=row.id).update(stored=False, touched_at=_RELEASED)
            await self.objects.delete(row.name)
            await Blob.filter(id=row.id, stored=False).delete()
        if isinstance(self.objects, FileObjectStore):
            await self.objects.legacy_delete(sha256)

    async def ping(self) -> None:
        await self.objects.ping()

    async def aclose(self) -> None:
        await self.objects.aclose()

    async def _legacy_exists(self, sha256: str) -> bool:
        return isinstance(self.objects, FileObjectStore) and await self.objects.legacy_exists(
            sha256
        )


async def _decrypted(chunks: AsyncIterator[bytes], data_key: bytes) -> AsyncIterator[bytes]:
    decryptor = Decryptor(data_key)
    try:
        async for chunk in chunks:
            for plain in decryptor.feed(chunk):
                yield plain
        yield decryptor.finish()
    finally:
        closing = getattr(chunks, "aclose", None)
        if closing is not None:
            await closing()


def parse_blob_url(url: str) -> tuple[str, str]:
    """("file", directory) or ("s3", "bucket/prefix") from BLOB_URL; ValueError if neither."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"file", "s3"} or not rest.strip("/"):
        raise ValueError("BLOB_URL must be file://DIRECTORY or s3://BUCKET[/PREFIX]")
    if scheme == "s3":
        bucket = rest.strip("/").split("/", 1)[0]
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ValueError(f"BLOB_URL: {bucket!r} is not a valid bucket name")
        return scheme, rest.strip("/")
    return scheme, rest


def object_store(url: str, *, s3: S3Location | None = None) -> ObjectStore:
    """The object store BLOB_URL names; `s3` gives the endpoint and keys for s3:// (its
    bucket and prefix are taken from the URL)."""
    scheme, where = parse_blob_url(url)
    if scheme == "file":
        return FileObjectStore(where)
    bucket, _, prefix = where.partition("/")
    base = s3 or S3Location(bucket=bucket)
    return S3ObjectStore(
        S3Location(
            bucket=bucket,
            prefix=prefix.strip("/"),
            endpoint_url=base.endpoint_url,
            access_key_id=base.access_key_id,
            secret_access_key=base.secret_access_key,
            region=base.region,
        )
    )


def memory_blob_store(keyring: Keyring | None = None) -> BlobStore:
    """An encrypted store in memory (tests); the index still lives in the database."""
    return BlobStore(MemoryObjectStore(), keyring or Keyring(new_data_key()))
