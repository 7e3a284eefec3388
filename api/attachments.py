"""GET /attachments/{id}/content: the bytes of a message attachment, for its participants.

A member of an establishment downloading an attachment of a patient's message of its shared
inbox leaves an access event (DOWNLOAD, basis CONVERSATION, naming the establishment), as
reading that message through GraphQL does.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from api.context import Services
from api.downloads import caller_and_id, open_bytes, stream_blob
from api.view import json_error_response
from models.audit import AccessAction, AccessBasis, AuditTrail
from models.base import paris_today, utcnow
from models.message import member_read, readable_attachment
from subscriptions.channels import access_announcer


async def attachment_content(request: Request) -> Response:
    services: Services = request.app.state.services
    called = await caller_and_id(request, services, "Attachment")
    if isinstance(called, Response):
        return called
    actor, pk = called
    now = utcnow()
    attachment = await readable_attachment(actor, pk, today=paris_today(now))
    if attachment is None:
        return json_error_response(404, "NOT_FOUND", "Not found.")
    # Opened before the access event and the headers: a missing object fails here.
    chunks = await open_bytes(services, attachment.sha256, f"attachment {attachment.id}")
    if isinstance(chunks, Response):
        return chunks
    message = attachment.message
    conversation = message.conversation
    if member_read(actor, conversation.establishment_id, message.sender_role):
        trail = AuditTrail(
            request_id=uuid.uuid4().hex,
            actor_id=actor.id,
            actor_role=actor.audit_role,
            now=now,
            announce=access_announcer(services.bus),  # the live access log (accessLogged)
        )
        await trail.record(
            patient_id=conversation.patient_id,
            action=AccessAction.DOWNLOAD,
            basis=AccessBasis.CONVERSATION,
            establishment_id=conversation.establishment_id,
        )
    return await stream_blob(
        services,
        sha256=attachment.sha256,
        mime_type=attachment.mime_type,
        size=attachment.size,
        filename=attachment.filename,
        chunks=chunks,
    )
