"""GET /documents/{id}/content: the bytes, behind the same check and access event as GraphQL."""

from __future__ import annotations

import re
import uuid

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.auth import bearer_from_header
from api.context import Services
from api.errors import NotFound, Unauthenticated
from api.view import json_error_response
from models.audit import AccessAction, AccessBasis, AuditTrail
from models.base import paris_today, utcnow
from models.document import readable_document
from models.session import authenticate
from resolvers import ids


def _filename(title: str, mime: str) -> str:
    extension = {
        "application/pdf": "pdf",
        "image/jpeg": "jpg",
        "image/png": "png",
        "image/tiff": "tiff",
        "application/rtf": "rtf",
        "text/plain": "txt",
    }.get(mime, "bin")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("._") or "document"
    return f"{stem[:80]}.{extension}"


async def document_content(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        actor = await authenticate(bearer_from_header(request.headers.get("authorization")))
        if actor.anonymous:
            raise Unauthenticated()
        pk = ids.decode_as(request.path_params["id"], "Document")
    except Unauthenticated as exc:
        return json_error_response(401, "UNAUTHENTICATED", exc.message)
    except NotFound:
        return json_error_response(404, "NOT_FOUND", "Not found.")
    now = utcnow()
    found = await readable_document(actor, pk, today=paris_today(now), now=now)
    if found is None:
        return json_error_response(404, "NOT_FOUND", "Not found.")
    document, relation = found
    basis = relation.audit_basis
    if basis is None and not relation.holder:
        basis = AccessBasis.AUTHOR
    if basis is not None:
        trail = AuditTrail(
            request_id=uuid.uuid4().hex, actor_id=actor.id, actor_role=actor.audit_role, now=now
        )
        await trail.record(
            patient_id=document.patient_id,
            action=AccessAction.DOWNLOAD,
            basis=basis,
            document_id=document.id,
        )
    return stream_blob(
        services,
        sha256=document.sha256,
        mime_type=document.mime_type,
        size=document.size,
        filename=_filename(document.title, document.mime_type),
    )


def stream_blob(
    services: Services, *, sha256: str, mime_type: str, size: int, filename: str
) -> Response:
    """Stream stored bytes as a download the browser never renders inline or caches."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", filename).strip("._") or "download"
    return StreamingResponse(
        services.blobs.iter_chunks(sha256),
        media_type=mime_type,
        headers={
            "Content-Disposition": f'attachment; filename="{safe[:120]}"',
            "Content-Length": str(size),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
