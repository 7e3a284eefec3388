"""Bytes lost from the store: a download answers a coded 500 carrying the request id that
the error log names (an incident to investigate, not a 404 that hides it), for documents
and attachments alike, and writes no access event."""

from __future__ import annotations

import logging

import httpx
import pytest

from api.config import Settings
from models.audit import AccessEvent
from tests.factories import make_patient, make_professional
from tests.messaging_support import PDF, download, save, started, stored_files


async def test_a_download_whose_bytes_are_gone_is_a_coded_500_that_the_log_names(
    client: httpx.AsyncClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    alice, doc = await make_patient(), await make_professional()
    attachment = (await started(client, doc, alice, [("cr.pdf", PDF, "application/pdf")]))[
        "message"
    ]["attachments"][0]
    document = (await save(client, alice.token, attachment["id"])).ok()["saveAttachment"][
        "document"
    ]
    files = stored_files(settings)
    assert files
    for path in files:
        path.unlink()
    events = await AccessEvent.all().count()

    attachment_answer = await download(client, attachment["id"], doc.token)
    document_answer = await client.get(
        f"/documents/{document['id']}/content",
        headers={"Authorization": f"Bearer {alice.token}"},
    )

    for answer, owner in ((attachment_answer, "attachment"), (document_answer, "document")):
        assert answer.status_code == 500
        (error,) = answer.json()["errors"]
        assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        request_id = error["extensions"]["requestId"]
        logged = [
            r for r in caplog.records if r.levelno == logging.ERROR and request_id in r.getMessage()
        ]
        assert len(logged) == 1 and logged[0].getMessage().startswith(owner)
    assert await AccessEvent.all().count() == events
