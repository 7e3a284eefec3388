"""GET /calendar/{token}.ics: the private feed; the token in the URL is the credential."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from api.context import Services
from api.view import json_error_response
from models.calendar_feed import render_feed


async def calendar_feed(request: Request) -> Response:
    services: Services = request.app.state.services
    token = request.path_params["token"]
    host = urlsplit(services.settings.public_url).hostname or "espace-sante"
    body = await render_feed(token, host=host) if len(token) < 200 else None
    if body is None:
        return json_error_response(404, "NOT_FOUND", "Not found.")
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )
