"""Persisted documents at the edge: which text a request runs, and whether it may.

A request names its document one of four ways (../shared/API.md, "Persisted documents and
limits"); `DocumentRegistry.resolve` turns each into the text to run, before strawberry sees
the request, for HTTP (api/view.py) and the websocket alike (api/ws_operations.py):

- `query` alone: run, unless `TRUSTED_DOCUMENTS=enforce` (PERSISTED_QUERY_ID_REQUIRED);
- `documentId` (`sha256:<hex>`, the hex alone, or a manifest's own id): its registered
  text if allowed for the caller, else PERSISTED_QUERY_NOT_IN_LIST;
- `extensions.persistedQuery` alone (APQ): the registered text of the hash, else
  PERSISTED_QUERY_NOT_FOUND (HTTP 200), and the client sends the text with the hash;
- `extensions.persistedQuery` + `query`: BAD_USER_INPUT (HTTP 400) if the hash is not the
  text's; else the text is registered (within the limits) and run.

"Allowed": with `TRUSTED_DOCUMENTS` off or log, every registered document (a first-party
caller may send any text anyway); with `enforce`, only the trusted ones: loaded from a
manifest onto the shared first-party list or onto the list of the caller's client (the
`apollographql-client-name` header, or the same key in a websocket's `connection_init`
payload). APQ registers nothing under `enforce`, and a hash it registered is not trusted.
A partner app's token is held to its own list whatever the mode (`_resolve_app`): no free
text, no shared list, no APQ registration.
`APQ=false` answers PERSISTED_QUERY_NOT_SUPPORTED to any `persistedQuery`. Under `log`,
each document that `enforce` would refuse is logged once per process, with its hash and
client.

Where the time goes: a document served by its id is looked up once per process and then
cached here (`DocumentCache`, LRU, bounded in entries and characters), so a hash-only
request runs no SQL of its own; strawberry's ParserCache and the validation cache
(api/extensions/limits.py) then keep the parsed and validated document, keyed by that same
text. Free text under `off` costs nothing; under `log`, one lookup per new text.

Other extensions may key their caches by `document_sha256(execution_context)`: the SHA-256
of the text being run (about 15 µs for 15 KB of text).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from graphql import GraphQLError

from api.context import Context
from api.errors import (
    BadUserInput,
    PersistedQueryIdRequired,
    PersistedQueryNotFound,
    PersistedQueryNotInList,
    PersistedQueryNotSupported,
    from_domain,
)
from models import persisted, ratelimit
from models.errors import DomainError, RateLimited

logger = logging.getLogger(__name__)

OFF, LOG, ENFORCE = "off", "log", "enforce"
TRUSTED_DOCUMENTS_MODES = (OFF, LOG, ENFORCE)
CLIENT_NAME_HEADER = "apollographql-client-name"
APQ_WINDOW = timedelta(hours=1)

CACHE_ENTRIES = 2048
CACHE_CHARACTERS = 8 * 1024 * 1024  # the texts held, at most (about 8 MB of ASCII)
LOGGED_ENTRIES = 10_000  # (document, client) pairs already logged under `log`


class MalformedPersistedRequest(BadUserInput):
    """A persisted-document request that cannot be read (HTTP 400 whatever the media type)."""

    http_status = 400


def document_sha256(execution_context: Any) -> str | None:
    """The lower-case hex SHA-256 of the document an operation runs (None without a text),
    for the caches of other extensions."""
    query = getattr(execution_context, "query", None)
    return persisted.sha256_hex(query) if isinstance(query, str) else None


@dataclass(frozen=True)
class DocumentRequest:
    query: str | None
    document_id: object = None  # as the client sent it: checked by `resolve`
    extensions: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Resolved:
    query: str | None  # the text to run (None: the request has none, strawberry says so)
    sha256: str | None


class DocumentCache:
    """Documents by SHA-256 and aliases by (client, alias), least recently used out first;
    only what exists is kept (an unknown id is asked of the database each time, so a
    document another worker registers is served at once)."""

    def __init__(self, max_entries: int = CACHE_ENTRIES, max_chars: int = CACHE_CHARACTERS):
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._documents: OrderedDict[str, persisted.StoredDocument] = OrderedDict()
        self._aliases: OrderedDict[tuple[str | None, str], str] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._documents)

    def get(self, sha256: str) -> persisted.StoredDocument | None:
        document = self._documents.get(sha256)
        if document is not None:
            self._documents.move_to_end(sha256)
        return document

    def put(self, document: persisted.StoredDocument) -> None:
        if len(document.text) > self.max_chars:
            return
        old = self._documents.pop(document.sha256, None)
        if old is not None:
            self._chars -= len(old.text)
        self._documents[document.sha256] = document
        self._chars += len(document.text)
        while len(self._documents) > self.max_entries or self._chars > self.max_chars:
            _, evicted = self._documents.popitem(last=False)
            self._chars -= len(evicted.text)

    def alias(self, client: str | None, alias: str) -> str | None:
        sha256 = self._aliases.get((client, alias))
        if sha256 is not None:
            self._aliases.move_to_end((client, alias))
        return sha256

    def put_alias(self, client: str | None, alias: str, sha256: str) -> None:
        self._aliases[(client, alias)] = sha256
        self._aliases.move_to_end((client, alias))
        while len(self._aliases) > self.max_entries:
            self._aliases.popitem(last=False)


def client_name(context: Context) -> str | None:
    """The caller's client: the `apollographql-client-name` header (on a websocket, of the
    handshake or in the `connection_init` payload); None when absent or not a valid name."""
    name = context.request.headers.get(CLIENT_NAME_HEADER)
    if name is None:
        for key, value in (context.connection_params or {}).items():
            if isinstance(key, str) and key.lower() == CLIENT_NAME_HEADER:
                name = value if isinstance(value, str) else None
    if not name:
        return None
    try:
        return persisted.check_client(name.strip())
    except DomainError:
        return None


def http_status(error: GraphQLError, never_executed: int) -> int:
    """The HTTP status of a refusal from `resolve`: 200 for PERSISTED_QUERY_NOT_FOUND (the
    client retries with the text), 400 for a request that cannot be read, else that of a
    request that never executed (`never_executed`: 400 or 200 by the media type)."""
    if isinstance(error, PersistedQueryNotFound):
        return 200
    status = getattr(error, "http_status", 200)
    return status if status >= 400 else never_executed


class DocumentRegistry:
    """One per application: the registry's cache and what `log` has already logged."""

    def __init__(self, cache: DocumentCache | None = None) -> None:
        self.cache = cache or DocumentCache()
        self._logged: OrderedDict[tuple[str, str | None], None] = OrderedDict()

    async def resolve(self, request: DocumentRequest, context: object) -> Resolved:
        """The text `request` runs for the caller of `context`, or the coded refusal
        (an ApiError; `http_status` gives its status over HTTP)."""
        if not isinstance(context, Context):
            # A view without this application's context has no registry: text only.
            extensions = request.extensions if isinstance(request.extensions, Mapping) else {}
            named = request.document_id is not None or extensions.get("persistedQuery")
            if named and request.query is None:
                raise PersistedQueryNotSupported()
            return Resolved(request.query, None)
        try:
            return await self._resolve(request, context)
        except DomainError as error:
            raise from_domain(error) from None

    async def _resolve(self, request: DocumentRequest, context: Context) -> Resolved:
        if context.actor.is_app:
            return await self._resolve_app(request, context)
        settings = context.settings
        mode = settings.trusted_documents
        extensions = request.extensions if isinstance(request.extensions, Mapping) else {}
        apq = extensions.get("persistedQuery")
        if request.document_id is not None:
            if request.query is not None or apq is not None:
                raise MalformedPersistedRequest(
                    "Send a documentId alone: without query or extensions.persistedQuery."
                )
            client = client_name(context)
            document = await self._by_id(request.document_id, client, trusted=mode == ENFORCE)
            if document is None:
                raise PersistedQueryNotInList(
                    "No document of this documentId is registered for this client."
                )
            self._note(document, client, mode)
            return Resolved(document.text, document.sha256)
        if apq is not None:
            if not settings.apq:
                raise PersistedQueryNotSupported()
            return await self._apq(apq, request.query, client_name(context), context)
        if request.query is None:
            return Resolved(None, None)
        if mode == ENFORCE:
            raise PersistedQueryIdRequired(
                "Only registered documents are served here: send the documentId of one."
            )
        if mode != LOG:  # free text, as most requests are: no client to look up
            return Resolved(request.query, None)
        client = client_name(context)
        sha256 = persisted.sha256_hex(request.query)
        if (sha256, client) not in self._logged:
            self._note(await self._find(sha256, client, trusted=True), client, mode, sha256)
        return Resolved(request.query, sha256)

    async def _resolve_app(self, request: DocumentRequest, context: Context) -> Resolved:
        """A partner app's token runs only the documents on its own list (models/persisted.py,
        `trusted_for(client, shared=False)`), whatever TRUSTED_DOCUMENTS says: by documentId,
        or by an APQ hash alone; never free text, and it registers nothing."""
        client = context.actor.app_client
        extensions = request.extensions if isinstance(request.extensions, Mapping) else {}
        apq = extensions.get("persistedQuery")
        if request.document_id is not None:
            if request.query is not None or apq is not None:
                raise MalformedPersistedRequest(
                    "Send a documentId alone: without query or extensions.persistedQuery."
                )
            document = await self._by_id(request.document_id, client, trusted=True, shared=False)
        elif apq is not None and request.query is None:
            if not context.settings.apq:
                raise PersistedQueryNotSupported()
            if not isinstance(apq, Mapping) or apq.get("version") != 1:
                raise MalformedPersistedRequest(
                    "Unsupported persistedQuery: expected {version: 1, sha256Hash}."
                )
            sha256 = apq.get("sha256Hash")
            if not isinstance(sha256, str) or not persisted.is_sha256(sha256.lower()):
                raise MalformedPersistedRequest("persistedQuery.sha256Hash must be 64 hex digits.")
            document = await self._find(sha256.lower(), client, trusted=True, shared=False)
        elif request.query is None:
            return Resolved(None, None)
        else:
            raise PersistedQueryIdRequired(
                "A partner app sends the documentId of one of the documents it registered."
            )
        if document is None:
            raise PersistedQueryNotInList("This app registered no document of this id.")
        return Resolved(document.text, document.sha256)

    async def _apq(
        self, apq: object, query: str | None, client: str | None, context: Context
    ) -> Resolved:
        mode = context.settings.trusted_documents
        if not isinstance(apq, Mapping) or apq.get("version") != 1:
            raise MalformedPersistedRequest(
                "Unsupported persistedQuery: expected {version: 1, sha256Hash}."
            )
        sha256 = apq.get("sha256Hash")
        if not isinstance(sha256, str) or not persisted.is_sha256(sha256.lower()):
            raise MalformedPersistedRequest("persistedQuery.sha256Hash must be 64 hex digits.")
        sha256 = sha256.lower()
        if query is not None and persisted.sha256_hex(query) != sha256:
            raise MalformedPersistedRequest(
                "provided sha does not match query: persistedQuery.sha256Hash is not the "
                "SHA-256 of the query text."
            )
        document = await self._find(sha256, client, trusted=mode == ENFORCE)
        if mode == ENFORCE and document is None:
            raise PersistedQueryNotInList("No document of this hash is registered for this client.")
        if document is not None:
            self._note(document, client, mode)
            return Resolved(document.text if query is None else query, sha256)
        if query is None:
            raise PersistedQueryNotFound()  # the message Apollo's clients look for
        await self._register(query, context)
        self._note(None, client, mode, sha256)
        return Resolved(query, sha256)

    async def _register(self, query: str, context: Context) -> None:
        """Registers an APQ text, within the limits: a text too large, or a caller past its
        registrations of the hour, is served unregistered (the client keeps sending it)."""
        settings = context.settings
        if len(query.encode()) > settings.apq_max_bytes:
            return
        actor = context.actor
        caller = f"account:{actor.account_id}" if actor.account_id else f"address:{context.client}"
        key = context.vault.keyed_hash(caller, purpose="apq-caller")
        limit = ratelimit.Limit("apq:" + key, settings.apq_registrations_per_hour, APQ_WINDOW)
        registered_by = caller if actor.account_id else f"address:{key[:16]}"
        try:
            await persisted.register_apq(
                query, registered_by=registered_by, limits=[limit], now=context.now
            )
        except RateLimited:
            logger.info("APQ registration refused: %s is past its hourly limit", registered_by)

    async def _find(
        self, sha256: str, client: str | None, *, trusted: bool, shared: bool = True
    ) -> persisted.StoredDocument | None:
        """The registered document (trusted for `client` if `trusted`: on its list, or with
        `shared` on the first-party one too), from the cache when it answers, else from the
        database."""
        document = self.cache.get(sha256)
        if document is None or (trusted and not document.trusted_for(client, shared=shared)):
            document = await persisted.find(sha256)
            if document is not None:
                self.cache.put(document)
        if document is None or (trusted and not document.trusted_for(client, shared=shared)):
            return None
        return document

    async def _by_id(
        self, document_id: object, client: str | None, *, trusted: bool, shared: bool = True
    ) -> persisted.StoredDocument | None:
        try:
            key = persisted.parse_document_id(document_id)
        except DomainError as error:
            raise MalformedPersistedRequest(error.message, field="documentId") from None
        sha256 = key.sha256
        if key.alias is not None:
            sha256 = self.cache.alias(client, key.alias)
            if sha256 is None:
                sha256 = await persisted.find_alias(key.alias, client)
                if sha256 is None:
                    return None
                self.cache.put_alias(client, key.alias, sha256)
        assert sha256 is not None
        return await self._find(sha256, client, trusted=trusted, shared=shared)

    def _note(
        self,
        document: persisted.StoredDocument | None,
        client: str | None,
        mode: str,
        sha256: str | None = None,
    ) -> None:
        """Under `log`: a document `enforce` would refuse, logged once per (hash, client)."""
        if mode != LOG or (document is not None and document.trusted_for(client)):
            return
        sha256 = document.sha256 if document is not None else sha256
        assert sha256 is not None
        key = (sha256, client)
        if key in self._logged:
            self._logged.move_to_end(key)
            return
        self._logged[key] = None
        while len(self._logged) > LOGGED_ENTRIES:
            self._logged.popitem(last=False)
        logger.warning(
            "TRUSTED_DOCUMENTS=log: untrusted document sha256:%s from client %s "
            "(enforce would refuse it)",
            sha256,
            client or "(none)",
        )


@dataclass(frozen=True)
class ManifestCheck:
    errors: tuple[str, ...]  # texts that are not GraphQL: the manifest is refused
    warnings: tuple[str, ...]  # documents the current schema would refuse to run


def check_manifest(manifest: persisted.Manifest, schema: Any) -> ManifestCheck:
    """Each text of a manifest parsed (an error: the file is refused) and validated against
    `schema` (a warning: a document of another version of the schema may be registered,
    it will answer its validation errors)."""
    from graphql import parse, validate

    errors: list[str] = []
    warnings: list[str] = []
    for entry in manifest.entries:
        label = f"sha256:{entry.sha256}" + (f" ({entry.name})" if entry.name else "")
        try:
            document = parse(entry.text)
        except GraphQLError as error:
            errors.append(f"{label}: not a GraphQL document: {error.message}")
            continue
        invalid = validate(schema, document)
        if invalid:
            warnings.append(f"{label}: the current schema refuses it: {invalid[0].message}")
    return ManifestCheck(tuple(errors), tuple(warnings))


__all__ = [
    "CLIENT_NAME_HEADER",
    "ENFORCE",
    "LOG",
    "OFF",
    "TRUSTED_DOCUMENTS_MODES",
    "DocumentCache",
    "DocumentRegistry",
    "DocumentRequest",
    "MalformedPersistedRequest",
    "ManifestCheck",
    "Resolved",
    "check_manifest",
    "client_name",
    "document_sha256",
    "http_status",
]
