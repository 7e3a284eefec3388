"""GET /export/{patientId}.fhir.json: the whole space as one FHIR R4B Bundle (models/fhir.py).

For the holder and the legal representatives of a minor only (a representative's export
leaves out what is hidden from representatives); anyone else, whatever their rights to the
space, gets NOT_FOUND, as for an id that does not exist. The export is an access event of
its own (action EXPORT; basis HOLDER for the holder, REPRESENTATIVE for a representative),
written and announced to the live access log before the first byte goes. The Bundle is
streamed: rows in batches, bytes a chunk at a time.
"""

from __future__ import annotations

import logging
import uuid

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.context import Services
from api.downloads import caller_and_id
from api.errors import Forbidden, InternalError
from api.view import json_error_response
from models.access import relations
from models.audit import AccessAction, AccessBasis, AuditTrail
from models.base import paris_today, utcnow
from models.fhir import MEDIA_TYPE, Export
from subscriptions.channels import access_announcer

logger = logging.getLogger(__name__)


async def export_space(request: Request) -> Response:
    services: Services = request.app.state.services
    called = await caller_and_id(request, services, "Patient", "patient_id")
    if isinstance(called, Response):
        return called
    actor, pk = called
    now = utcnow()
    today = paris_today(now)
    relation = (await relations(actor, [pk], today, now))[pk]
    if not relation.manages:
        return json_error_response(404, "NOT_FOUND", "Not found.")
    if not relation.space_live:
        # Its dossier is archived with the closed space: reopen it first.
        return json_error_response(403, Forbidden.code, "This space is closed.")
    export = Export(
        actor=actor,
        relation=relation,
        blobs=services.blobs,
        vault=services.vault,
        now=now,
        today=today,
    )
    missing = await export.missing_blobs()
    if missing:
        # Checked before anything goes: once the Bundle streams, no error can be answered.
        request_id = uuid.uuid4().hex
        logger.error("export of %s: %d blobs missing (request_id=%s)", pk, len(missing), request_id)
        return json_error_response(
            500,
            InternalError.code,
            InternalError.default_message,
            extensions={"requestId": request_id},
        )
    trail = AuditTrail(
        request_id=uuid.uuid4().hex,
        actor_id=actor.id,
        actor_role=actor.audit_role,
        now=now,
        announce=access_announcer(services.bus),
    )
    await trail.record(
        patient_id=pk,
        action=AccessAction.EXPORT,
        basis=relation.audit_basis or AccessBasis.HOLDER,
    )
    filename = f"espace-sante-{today.isoformat()}.fhir.json"
    return StreamingResponse(
        export.stream(),
        media_type=MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
