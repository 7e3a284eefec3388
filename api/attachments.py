"""GET /attachments/{id}/content: the bytes of a message attachment, for its participants."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.auth import bearer_from_header
from api.context import Services
from api.downloads import stream_blob
from api.view import json_error_response
from models.base import paris_today
from models.errors import NotFound, Unauthenticated
from models.message import readable_attachment
from models.session import authenticate
from resolvers import ids


async def attachment_content(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        actor = await authenticate(bearer_from_header(request.headers.get("authorization")))
        if actor.anonymous:
            raise Unauthenticated()
        pk = ids.decode_as(request.path_params["id"], "Attachment")
    except Unauthenticated as exc:
        return json_error_response(401, "UNAUTHENTICATED", exc.message)
    except NotFound:
        return json_error_response(404, "NOT_FOUND", "Not found.")
    attachment = await readable_attachment(actor, pk, today=paris_today())
    if attachment is None:
        return json_error_response(404, "NOT_FOUND", "Not found.")
    return stream_blob(
        services,
        sha256=attachment.sha256,
        mime_type=attachment.mime_type,
        size=attachment.size,
        filename=attachment.filename,
    )
