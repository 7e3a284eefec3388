"""GET /documents/{id}/content: the bytes, behind the same check and access event as GraphQL."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.auth import bearer_from_header
from api.context import Services
from api.errors import InternalError
from api.view import json_error_response
from models.access import Actor
from models.audit import AccessAction, AuditTrail
from models.base import paris_today, utcnow
from models.blobs import BlobNotFound
from models.document import read_basis, readable_document
from models.errors import NotFound, Unauthenticated
from models.session import authenticate
from resolvers import ids
from subscriptions.channels import access_announcer

logger = logging.getLogger(__name__)


def _filename(title: str, mime: str) -> str:
    extension = {
        "application/pdf": "pdf",
        "image/jpeg": "jpg",
        "image/png": "png",
        "image/tiff": "tiff",
        "application/rtf": "rtf",
        "text/plain": "txt",
    }.get(mime, "bin")
    stem = " ".join(title.split())[:80] or "document"
    return f"{stem}.{extension}"


async def caller_and_id(
    request: Request, services: Services, type_name: str, param: str = "id"
) -> tuple[Actor, UUID] | Response:
    """The authenticated caller of a content route and the id its path names, or the answer
    that ends the request: 401 without a valid token, 404 for an id of another type."""
    try:
        actor = await authenticate(
            bearer_from_header(request.headers.get("authorization")), vault=services.vault
        )
        if actor.anonymous:
            raise Unauthenticated()
        return actor, ids.decode_as(request.path_params[param], type_name)
    except Unauthenticated as exc:
        return json_error_response(401, "UNAUTHENTICATED", exc.message)
    except NotFound:
        return json_error_response(404, "NOT_FOUND", "Not found.")


async def open_bytes(
    services: Services, sha256: str, owner: str
) -> AsyncIterator[bytes] | Response:
    """The stored bytes of `owner`, or the 500 answered when they are missing (logged with
    the request id the client sees: bytes lost from the store are an incident, not a 404).
    An unreachable store raises StoreUnavailable: 503 (api/app.py)."""
    try:
        return await services.blobs.open(sha256)
    except BlobNotFound:
        request_id = uuid.uuid4().hex
        logger.error("%s has no bytes (request_id=%s)", owner, request_id)
        return json_error_response(
            500,
            InternalError.code,
            InternalError.default_message,
            extensions={"requestId": request_id},
        )


async def document_content(request: Request) -> Response:
    services: Services = request.app.state.services
    called = await caller_and_id(request, services, "Document")
    if isinstance(called, Response):
        return called
    actor, pk = called
    now = utcnow()
    found = await readable_document(actor, pk, today=paris_today(now), now=now)
    if found is None:
        return json_error_response(404, "NOT_FOUND", "Not found.")
    document, relation = found
    # Opened before the access event and the headers: no JSON error can follow those.
    chunks = await open_bytes(services, document.sha256, f"document {document.id}")
    if isinstance(chunks, Response):
        return chunks
    basis = read_basis(relation)
    if basis is not None:
        trail = AuditTrail(
            request_id=uuid.uuid4().hex,
            actor_id=actor.id,
            actor_role=actor.audit_role,
            now=now,
            announce=access_announcer(services.bus),  # the live access log (accessLogged)
        )
        await trail.record(
            patient_id=document.patient_id,
            action=AccessAction.DOWNLOAD,
            basis=basis,
            document_id=document.id,
        )
    return await stream_blob(
        services,
        sha256=document.sha256,
        mime_type=document.mime_type,
        size=document.size,
        filename=_filename(document.title, document.mime_type),
        chunks=chunks,
    )


def _ascii_name(filename: str, limit: int = 120) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", filename).strip("._") or "download"
    stem, dot, extension = safe.rpartition(".")
    if len(safe) <= limit or not dot or len(extension) > 8:
        return safe[:limit]
    return f"{stem[: limit - len(extension) - 1]}.{extension}"


async def stream_blob(
    services: Services,
    *,
    sha256: str,
    mime_type: str,
    size: int,
    filename: str,
    chunks: AsyncIterator[bytes] | None = None,
) -> Response:
    """Stream stored bytes as a download the browser never renders inline or caches.

    The Content-Type is exactly the stored one: no charset is claimed for text, whose bytes
    may be Windows-1252 as well as UTF-8. The name goes twice (RFC 6266): an ASCII fallback,
    and UTF-8 in `filename*` so accented titles survive. Should a browser render the bytes
    anyway (a file opened from its URL, a proxy that drops the other headers), the content
    security policy makes it a sandboxed, unique origin that may load and run nothing.
    """
    disposition = (
        f'attachment; filename="{_ascii_name(filename)}"; '
        f"filename*=UTF-8''{quote(filename, safe='')}"
    )
    return StreamingResponse(
        # Opened before the headers go: a missing or unreachable object fails here.
        chunks if chunks is not None else await services.blobs.open(sha256),
        headers={
            "Content-Type": mime_type,
            "Content-Disposition": disposition,
            "Content-Length": str(size),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "no-store",
        },
    )
