"""The registry of persisted GraphQL documents, shared by every worker and machine.

A document is the exact UTF-8 text of a GraphQL request, identified by the lower-case hex
SHA-256 of that text. It gets into the registry two ways (its `source`):

- **manifest**: `espace-sante documents load` registers the documents of a manifest built
  with a front end (Apollo's persisted-query manifest, GraphQL Code Generator's
  `persisted-documents.json`, Relay's map), on the shared first-party list (`client` None)
  or on the list of one client (`--client NAME`). These are the *trusted* documents: what
  `TRUSTED_DOCUMENTS=enforce` runs, each caller its own client's list and the shared one.
- **apq**: Apollo's automatic persisted queries register a text sent with its hash, so
  that later calls may send the hash alone. Anyone may register one (within limits), so an
  APQ registration makes a document known, never trusted.

A manifest whose ids are not our SHA-256 (Relay's MD5 ids, Code Generator's SHA-1 hashes,
custom ids) has each id stored as an alias of the document, per client. Every id whose form
names its algorithm (64, 40 or 32 hex digits: SHA-256, SHA-1, MD5) is checked against its
text: a manifest with one id that does not match is refused whole.

Nothing is ever removed, so what a process caches about a document stays true (that it
exists, and the lists it is on); only its absence from a list may change.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tortoise import fields
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import ratelimit
from models.base import Entity
from models.errors import Invalid

SHARED = ""  # the `client` column of the shared first-party list (None in this module's API)
MAX_CLIENT_LENGTH = 100
MAX_ALIAS_LENGTH = 200
MAX_NAME_LENGTH = 200
APOLLO_FORMAT = "apollo-persisted-query-manifest"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-fA-F]+")
# GraphQL-over-HTTP, Appendix A: a custom id is unreserved characters; `x-…:…` is prefixed.
_CUSTOM_ID = re.compile(r"(x-[A-Za-z0-9._~-]+:)?[A-Za-z0-9._~-]+")
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@/+-]*")
_BY_HEX_LENGTH = {40: "sha1", 32: "md5"}  # the other hash ids a manifest may carry
_ALGORITHM_NAMES = {"sha1": "SHA-1", "md5": "MD5"}


class DocumentSource(StrEnum):
    MANIFEST = "manifest"
    APQ = "apq"


class PersistedDocument(Model):
    """One document text, keyed by its SHA-256."""

    sha256 = fields.CharField(max_length=64, primary_key=True)
    text = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "persisted_document"
        table_description = "GraphQL documents by their SHA-256 (persisted queries)."


class DocumentRegistration(Entity):
    """A document on a list: a client's (or the shared one, client ''), by a manifest or APQ."""

    document: fields.ForeignKeyRelation[PersistedDocument] = fields.ForeignKeyField(
        "models.PersistedDocument", related_name="registrations", on_delete=fields.CASCADE
    )
    client = fields.CharField(max_length=MAX_CLIENT_LENGTH, default=SHARED)
    source = fields.CharEnumField(DocumentSource, max_length=8)
    name = fields.CharField(max_length=MAX_NAME_LENGTH, null=True)  # the operation's name
    registered_by = fields.CharField(max_length=200)

    class Meta:
        table = "document_registration"
        unique_together = (("document", "client", "source"),)


class DocumentAlias(Entity):
    """Another id of a document in a client's manifest (Relay's MD5, Code Generator's SHA-1)."""

    alias = fields.CharField(max_length=MAX_ALIAS_LENGTH)
    client = fields.CharField(max_length=MAX_CLIENT_LENGTH, default=SHARED)
    document: fields.ForeignKeyRelation[PersistedDocument] = fields.ForeignKeyField(
        "models.PersistedDocument", related_name="aliases", on_delete=fields.CASCADE
    )

    class Meta:
        table = "document_alias"
        unique_together = (("client", "alias"),)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_sha256(value: str) -> bool:
    return _SHA256.fullmatch(value) is not None


@dataclass(frozen=True)
class DocumentKey:
    """A `documentId` as a request gives it: our SHA-256, or another id (an alias)."""

    sha256: str | None = None
    alias: str | None = None


def parse_document_id(document_id: object) -> DocumentKey:
    """`sha256:<64 hex>` or the 64 hex digits alone; else a custom id of the
    GraphQL-over-HTTP appendix (`x-…:…`, or unreserved characters), looked up as an alias."""
    if not isinstance(document_id, str) or not document_id:
        raise Invalid("documentId must be a non-empty string.", field="document_id")
    if document_id.startswith("sha256:") or len(document_id) == 64:
        payload = document_id.removeprefix("sha256:").lower()
        if is_sha256(payload):
            return DocumentKey(sha256=payload)
        if payload != document_id.lower():
            raise Invalid("A sha256: documentId carries 64 hex digits.", field="document_id")
    if len(document_id) > MAX_ALIAS_LENGTH or _CUSTOM_ID.fullmatch(document_id) is None:
        raise Invalid(
            f"documentId is `sha256:` and 64 hex digits, or an id of at most {MAX_ALIAS_LENGTH} "
            "letters, digits and - . _ ~.",
            field="document_id",
        )
    return DocumentKey(alias=alias_key(document_id))


def check_client(name: str) -> str:
    """A client name as `--client` and the `apollographql-client-name` header give it."""
    if not name or len(name) > MAX_CLIENT_LENGTH or _CLIENT_NAME.fullmatch(name) is None:
        raise Invalid(
            "A client name is 1 to 100 letters, digits and . _ @ / + - (starting with a "
            "letter or a digit).",
            field="client",
        )
    return name


def _column(client: str | None) -> str:
    return SHARED if client is None else client


# --- lookups ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredDocument:
    sha256: str
    text: str
    # The clients whose trusted (manifest) list holds it; None for the shared list.
    lists: frozenset[str | None]
    apq: bool  # registered by an automatic persisted query too

    def trusted_for(self, client: str | None, *, shared: bool = True) -> bool:
        """Whether the document is allowed for `client` where only trusted documents run: on
        its own list, or (with `shared`, as for first-party clients) on the shared one. A
        partner app would be held to its own list: `shared=False`."""
        return (shared and None in self.lists) or (client is not None and client in self.lists)


async def find(sha256: str) -> StoredDocument | None:
    """The registered document of that SHA-256 (lower-case hex), with its lists; one query."""
    rows = await DocumentRegistration.filter(document_id=sha256).values(
        "client", "source", "document__text"
    )
    if not rows:
        return None
    return StoredDocument(
        sha256=sha256,
        text=rows[0]["document__text"],
        lists=frozenset(
            None if row["client"] == SHARED else row["client"]
            for row in rows
            if row["source"] == DocumentSource.MANIFEST
        ),
        apq=any(row["source"] == DocumentSource.APQ for row in rows),
    )


def alias_key(alias: str) -> str:
    """How an alias is stored: hex ids in lower case, other ids as they are."""
    return alias.lower() if _HEX.fullmatch(alias) else alias


async def find_alias(alias: str, client: str | None) -> str | None:
    """The SHA-256 an alias names for `client` (its own list first, then the shared one)."""
    rows = await DocumentAlias.filter(
        alias=alias_key(alias), client__in=sorted({_column(client), SHARED})
    ).values_list("client", "document_id")
    by_client = {str(row[0]): str(row[1]) for row in rows}
    return by_client.get(_column(client), by_client.get(SHARED))


# --- automatic persisted queries --------------------------------------------------------


async def register_apq(
    text: str,
    *,
    registered_by: str,
    limits: Iterable[ratelimit.Limit],
    now: datetime,
) -> bool:
    """Registers `text` for later hash-only calls: True when it was not known before.
    Each new registration counts against `limits` first (RATE_LIMITED past one of them)."""
    sha256 = sha256_hex(text)
    if await DocumentRegistration.filter(document_id=sha256).exists():
        return False
    await ratelimit.reserve(list(limits), now=now, message="Too many new persisted queries.")
    async with in_transaction() as conn:
        await PersistedDocument.bulk_create(
            [PersistedDocument(sha256=sha256, text=text)], ignore_conflicts=True, using_db=conn
        )
        await DocumentRegistration.bulk_create(
            [
                DocumentRegistration(
                    document_id=sha256,
                    client=SHARED,
                    source=DocumentSource.APQ,
                    registered_by=registered_by,
                )
            ],
            ignore_conflicts=True,
            using_db=conn,
        )
    return True


# --- manifests --------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    sha256: str
    text: str
    name: str | None
    alias: str | None  # the manifest's id, when it is not our SHA-256


@dataclass(frozen=True)
class Manifest:
    format: str  # what it was read as, for the report
    entries: tuple[ManifestEntry, ...]


def parse_manifest(raw: str | bytes) -> Manifest:
    """The documents of a manifest, each id checked against its text (Invalid when one does
    not match, or the file is not one of the three formats)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise Invalid("The manifest is not JSON.", field="manifest") from None
    if isinstance(data, dict) and "format" in data:
        return _apollo(data)
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        entries = [_entry(str(key), text, None) for key, text in data.items()]
        return Manifest("document map (GraphQL Code Generator or Relay)", _unique(entries))
    raise Invalid(
        "Not a manifest: expected Apollo's persisted-query manifest "
        '({"format": "apollo-persisted-query-manifest", ...}) or a map {"<id>": "<text>"} '
        "(GraphQL Code Generator's persisted-documents.json, Relay's map).",
        field="manifest",
    )


def _apollo(data: dict[str, object]) -> Manifest:
    if data.get("format") != APOLLO_FORMAT:
        raise Invalid(f"Unknown manifest format {data.get('format')!r}.", field="manifest")
    if data.get("version") != 1:
        raise Invalid(
            f"Unsupported {APOLLO_FORMAT} version {data.get('version')!r} (1 is).",
            field="manifest",
        )
    operations = data.get("operations")
    if not isinstance(operations, list):
        raise Invalid("The manifest has no list of operations.", field="manifest")
    entries = []
    for n, operation in enumerate(operations):
        if not isinstance(operation, dict) or not all(
            isinstance(operation.get(key), str) for key in ("id", "body")
        ):
            raise Invalid(f"Operation {n}: needs a string id and body.", field="manifest")
        name = operation.get("name")
        entries.append(
            _entry(operation["id"], operation["body"], name if isinstance(name, str) else None)
        )
    return Manifest("Apollo persisted-query manifest", _unique(entries))


def _entry(document_id: str, text: str, name: str | None) -> ManifestEntry:
    sha256 = sha256_hex(text)
    label = f"{name} ({document_id})" if name else document_id
    payload = document_id.removeprefix("sha256:")
    if payload != document_id or (len(payload) == 64 and _HEX.fullmatch(payload)):
        if payload.lower() != sha256:
            raise Invalid(
                f"Document {label}: its id is not the SHA-256 of its text. The manifest was "
                "altered or is corrupt; nothing was loaded.",
                field="manifest",
            )
        return ManifestEntry(sha256, text, _name(name), None)
    algorithm = _BY_HEX_LENGTH.get(len(document_id)) if _HEX.fullmatch(document_id) else None
    if algorithm is not None:
        if hashlib.new(algorithm, text.encode()).hexdigest() != document_id.lower():
            raise Invalid(
                f"Document {label}: its id is not the {_ALGORITHM_NAMES[algorithm]} of its "
                "text. The manifest was altered or is corrupt; nothing was loaded.",
                field="manifest",
            )
    elif len(document_id) > MAX_ALIAS_LENGTH or _CUSTOM_ID.fullmatch(document_id) is None:
        raise Invalid(
            f"Document {label}: an id is at most {MAX_ALIAS_LENGTH} letters, digits and - . _ ~.",
            field="manifest",
        )
    return ManifestEntry(sha256, text, _name(name), alias_key(document_id))


def _name(name: str | None) -> str | None:
    return name[:MAX_NAME_LENGTH] if name else None


def _unique(entries: list[ManifestEntry]) -> tuple[ManifestEntry, ...]:
    """The entries, once an id naming two different texts has been refused."""
    by_alias: dict[str, str] = {}
    for entry in entries:
        if (
            entry.alias is not None
            and by_alias.setdefault(entry.alias, entry.sha256) != entry.sha256
        ):
            raise Invalid(f"The id {entry.alias} names two documents.", field="manifest")
    return tuple(entries)


@dataclass(frozen=True)
class LoadReport:
    added: tuple[ManifestEntry, ...]  # newly on the list
    already: int  # already on it


async def load_manifest(
    manifest: Manifest, *, client: str | None, registered_by: str
) -> LoadReport:
    """Registers the manifest's documents on `client`'s list (None: the shared first-party
    one), at once or not at all; idempotent."""
    column = SHARED if client is None else check_client(client)
    shas = sorted({entry.sha256 for entry in manifest.entries})
    async with in_transaction() as conn:
        known = {
            str(row["sha256"])
            for row in await PersistedDocument.filter(sha256__in=shas)
            .using_db(conn)
            .values("sha256")
        }
        listed = {
            str(row["document_id"])
            for row in await DocumentRegistration.filter(
                document_id__in=shas, client=column, source=DocumentSource.MANIFEST
            )
            .using_db(conn)
            .values("document_id")
        }
        aliases = [entry.alias for entry in manifest.entries if entry.alias is not None]
        taken = {
            str(row["alias"]): str(row["document_id"])
            for row in await DocumentAlias.filter(client=column, alias__in=aliases)
            .using_db(conn)
            .values("alias", "document_id")
        }
        for entry in manifest.entries:
            other = taken.get(entry.alias) if entry.alias is not None else None
            if other is not None and other != entry.sha256:
                raise Invalid(
                    f"The id {entry.alias} already names another document of this list; "
                    "nothing was loaded.",
                    field="manifest",
                )
        documents: dict[str, PersistedDocument] = {}
        registrations: dict[str, DocumentRegistration] = {}
        new_aliases: dict[str, DocumentAlias] = {}
        added: list[ManifestEntry] = []
        for entry in manifest.entries:
            if entry.sha256 not in known and entry.sha256 not in documents:
                documents[entry.sha256] = PersistedDocument(sha256=entry.sha256, text=entry.text)
            if entry.sha256 not in listed and entry.sha256 not in registrations:
                registrations[entry.sha256] = DocumentRegistration(
                    document_id=entry.sha256,
                    client=column,
                    source=DocumentSource.MANIFEST,
                    name=entry.name,
                    registered_by=registered_by,
                )
                added.append(entry)
            if entry.alias is not None and entry.alias not in taken:
                new_aliases.setdefault(
                    entry.alias,
                    DocumentAlias(alias=entry.alias, client=column, document_id=entry.sha256),
                )
        # Conflicts (a concurrent load of the same file) are the rows wanted: ignored.
        await PersistedDocument.bulk_create(
            documents.values(), batch_size=200, ignore_conflicts=True, using_db=conn
        )
        await DocumentRegistration.bulk_create(
            registrations.values(), batch_size=200, ignore_conflicts=True, using_db=conn
        )
        await DocumentAlias.bulk_create(
            new_aliases.values(), batch_size=200, ignore_conflicts=True, using_db=conn
        )
    documents_in_manifest = len(shas)
    return LoadReport(added=tuple(added), already=documents_in_manifest - len(added))


# --- listing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    client: str | None
    source: DocumentSource
    sha256: str
    name: str | None
    registered_by: str
    registered_at: datetime
    aliases: tuple[str, ...]


async def list_registrations() -> list[Listed]:
    """Every registration: the shared list first, then each client's, APQ last."""
    rows = await DocumentRegistration.all().values(
        "client", "source", "document_id", "name", "registered_by", "created_at"
    )
    alias_rows = await DocumentAlias.all().values("client", "alias", "document_id")
    aliases: dict[tuple[str, str], list[str]] = {}
    for alias in alias_rows:
        aliases.setdefault((alias["client"], str(alias["document_id"])), []).append(alias["alias"])
    listed = [
        Listed(
            client=None if row["client"] == SHARED else row["client"],
            source=DocumentSource(row["source"]),
            sha256=str(row["document_id"]),
            name=row["name"],
            registered_by=row["registered_by"],
            registered_at=row["created_at"],
            aliases=tuple(sorted(aliases.get((row["client"], str(row["document_id"])), []))),
        )
        for row in rows
    ]
    return sorted(
        listed,
        key=lambda r: (
            r.source is DocumentSource.APQ,
            r.client is not None,
            r.client or "",
            r.name or "",
            r.sha256,
        ),
    )


__all__ = [
    "SHARED",
    "DocumentAlias",
    "DocumentRegistration",
    "DocumentSource",
    "Listed",
    "LoadReport",
    "Manifest",
    "ManifestEntry",
    "PersistedDocument",
    "StoredDocument",
    "alias_key",
    "check_client",
    "find",
    "find_alias",
    "is_sha256",
    "list_registrations",
    "load_manifest",
    "parse_manifest",
    "register_apq",
    "sha256_hex",
]
