"""Keeping the blob store and its rows in agreement: the reaper (run by `run-jobs`), and the
`espace-sante blobs` commands (api/blob_cli.py): migrate between stores, verify, rewrap.

A document or attachment row names its bytes by SHA-256; the `blob` table (models/blobs.py)
maps it to an encrypted object. Bytes are written, and their `blob` row marked stored,
before the document's transaction commits; an upload whose transaction then fails releases
them, and when even that fails (a crash, the database gone) they are left unreferenced:
the reaper removes them once they are older than `REAP_GRACE`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tortoise.expressions import Q, Subquery

from models.blob_crypto import BlobCorrupted, UnknownMasterKey, encrypted_size
from models.blobs import (
    Blob,
    BlobNotFound,
    BlobStore,
    FileObjectStore,
    ObjectStore,
    StoreUnavailable,
)
from models.document import Document
from models.message import Attachment

logger = logging.getLogger(__name__)

# Longer than any upload takes between writing its bytes and committing its row.
REAP_GRACE = timedelta(hours=1)
_BATCH = 200


def _unreferenced() -> Q:
    return ~Q(sha256__in=Subquery(Document.all().values("sha256"))) & ~Q(
        sha256__in=Subquery(Attachment.all().values("sha256"))
    )


def _reapable(cutoff: datetime) -> Q:
    """Untouched since `cutoff`, and never completed or referred to by no row."""
    return Q(touched_at__lt=cutoff) & (Q(stored=False) | _unreferenced())


async def reap_blobs(now: datetime, *, blobs: BlobStore, grace: timedelta = REAP_GRACE) -> int:
    """Remove the objects and rows of blobs no row refers to, untouched for `grace`.

    Each row is claimed by a conditional UPDATE (taken out of use only if it still qualifies:
    an upload reusing the bytes meanwhile moves `touched_at` and keeps it), then its object is
    removed, then the row. Safe on several machines at once; an object the store fails to
    remove keeps its row for the next run.
    """
    cutoff = now - grace
    reaped = 0
    seen: set[object] = set()
    while True:
        ids = (
            await Blob.filter(_reapable(cutoff))
            .exclude(id__in=seen)
            .limit(_BATCH)
            .values_list("id", flat=True)
        )
        if not ids:
            return reaped
        for row_id in ids:
            seen.add(row_id)
            claimed = await Blob.filter(_reapable(cutoff), id=row_id).update(stored=False)
            if not claimed:
                continue
            try:
                await blobs.objects.delete(row_id.hex)  # type: ignore[attr-defined]
            except (StoreUnavailable, OSError):
                logger.warning("reaper: could not remove object %s; next run", row_id)
                continue
            reaped += await Blob.filter(id=row_id, stored=False).delete()


# --- verify -------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    checked: int = 0
    legacy: int = 0  # still in clear (before encryption at rest)
    failures: list[str] = field(default_factory=list)


async def referenced_digests() -> list[str]:
    """Every SHA-256 a document or an attachment refers to, in order."""
    found = set(await Document.all().values_list("sha256", flat=True))
    found |= set(await Attachment.all().values_list("sha256", flat=True))
    return sorted(str(sha) for sha in found)


async def _digest(chunks: AsyncIterator[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    async for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


async def verify(
    blobs: BlobStore, *, progress: Callable[[str], None] | None = None
) -> VerifyReport:
    """Every referenced SHA-256 has its bytes in `blobs`, and they decrypt (each segment
    authenticated) to exactly that SHA-256."""
    report = VerifyReport()
    for sha in await referenced_digests():
        report.checked += 1
        row = await Blob.filter(sha256=sha, stored=True).order_by("created_at").first()
        store = blobs.objects
        if row is None and isinstance(store, FileObjectStore) and await store.legacy_exists(sha):
            report.legacy += 1
        try:
            digest, _ = await _digest(await blobs.open(sha))
        except BlobNotFound:
            report.failures.append(f"{sha}: missing")
            continue
        except (BlobCorrupted, UnknownMasterKey) as exc:
            report.failures.append(f"{sha}: does not decrypt ({type(exc).__name__}: {exc})")
            continue
        if digest != sha:
            report.failures.append(f"{sha}: decrypts to other bytes ({digest})")
        elif progress is not None and report.checked % 100 == 0:
            progress(f"{report.checked} checked")
    return report


# --- migrate ------------------------------------------------------------------------------


@dataclass
class MigrateReport:
    encrypted: int = 0  # blobs that were still in clear, encrypted on the way
    copied: int = 0
    present: int = 0  # already in the target (a resumed run)
    failures: list[str] = field(default_factory=list)


async def seal_legacy(blobs: BlobStore, report: MigrateReport) -> None:
    """Encrypt, in place, the blobs a file store still keeps in clear; each plain file goes
    once its encrypted copy and row are stored."""
    if not isinstance(blobs.objects, FileObjectStore):
        return
    store = blobs.objects
    for sha in await store.legacy_digests():
        data = b"".join([chunk async for chunk in await store.legacy_open(sha)])
        if hashlib.sha256(data).hexdigest() != sha:
            report.failures.append(f"{sha}: the plain file does not match its name; left alone")
            continue
        await blobs.put(data)
        await store.legacy_delete(sha)
        report.encrypted += 1


async def migrate(
    source: BlobStore, target: ObjectStore, *, progress: Callable[[str], None] | None = None
) -> MigrateReport:
    """Copy every stored object of `source` to `target`, unchanged (ciphertext: the data keys
    stay in the rows). Resumable: an object already in the target with the right size is
    skipped. Rows do not change, so the service runs on `source` throughout; point BLOB_URL
    at `target` once it is done, then run it again to copy what was uploaded meanwhile."""
    report = MigrateReport()
    await seal_legacy(source, report)
    last = None
    while True:
        page = Blob.filter(stored=True).order_by("id").limit(_BATCH)
        if last is not None:
            page = page.filter(id__gt=last)
        rows = await page
        if not rows:
            return report
        for row in rows:
            last = row.id
            expected = encrypted_size(row.size)
            try:
                if await target.size(row.name) == expected:
                    report.present += 1
                    continue
                await target.write(row.name, await source.objects.open(row.name))
                if await target.size(row.name) != expected:
                    report.failures.append(f"{row.sha256}: the copy has the wrong size")
                    continue
            except BlobNotFound:
                if await Blob.filter(id=row.id, stored=True).exists():
                    report.failures.append(f"{row.sha256}: missing from the source")
                continue
            report.copied += 1
            if progress is not None and report.copied % 100 == 0:
                progress(f"{report.copied} copied")


# --- rewrap -------------------------------------------------------------------------------


async def rewrap(blobs: BlobStore) -> tuple[int, list[str]]:
    """Wrap every data key under the current master key (after BLOB_MASTER_KEY changed, with
    the old one in BLOB_OLD_MASTER_KEYS); no object is rewritten. (count, failures)."""
    keyring = blobs.keyring
    count = 0
    failures: list[str] = []
    last = None
    while True:
        page = Blob.exclude(key_id=keyring.current_id).order_by("id").limit(_BATCH)
        if last is not None:
            page = page.filter(id__gt=last)
        rows = await page
        if not rows:
            return count, failures
        for row in rows:
            last = row.id
            try:
                data_key = keyring.unwrap(row.key_id, row.wrapped_key, row.name)
            except (UnknownMasterKey, BlobCorrupted) as exc:
                failures.append(f"{row.sha256}: {type(exc).__name__} {exc}")
                continue
            kid, wrapped = keyring.wrap(data_key, row.name)
            count += await Blob.filter(id=row.id, key_id=row.key_id).update(
                key_id=kid, wrapped_key=wrapped
            )
