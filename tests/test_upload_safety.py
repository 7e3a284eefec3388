"""Uploads that carry active content are refused, a file over the limit is cut off while it
streams, and downloads are sandboxed (issue 9, finding 11)."""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from api.app import create_app
from api.config import Settings
from models.document import Document as DocumentModel
from tests import messaging_support as messaging
from tests.factories import make_patient, make_professional
from tests.graphql import GraphQLResult
from tests.test_documents import ADD, PREFLIGHT, blob_path, download, stored_files, upload

KIB = 1024
SCRIPT = b"<script>alert(document.domain)</script>"
REFUSED_TYPE = "Unsupported file type: PDF, JPEG, PNG, TIFF, RTF or plain text is accepted."
DOWNLOAD_HEADERS = {
    "content-security-policy": "sandbox; default-src 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


def _pdf(extra_objects: tuple[bytes, ...] = (), trailer: bytes = b"") -> bytes:
    """A small but complete PDF 1.7, as producers write them: a compressed content stream,
    an image of incompressible bytes, XMP metadata (uncompressed XML), hex strings, and an
    exact cross-reference table."""
    content = zlib.compress(b"BT /F1 12 Tf 72 720 Td (Bilan sanguin : CRP < 5 mg/L) Tj ET")
    pixels = random.Random(11).randbytes(16 * KIB)  # deterministic "random" image data
    xmp = (
        b"<?xpacket begin='\xef\xbb\xbf' id='W5M0MpCehiHzreSzNTczkc9d'?>\n"
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
        b"xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
        b"<rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'>"
        b"<dc:title><rdf:Alt><rdf:li xml:lang='x-default'>Bilan</rdf:li></rdf:Alt></dc:title>"
        b"</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end='w'?>"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /Metadata 7 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /XObject /Subtype /Image /Width 128 /Height 128 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream"
        % (len(zlib.compress(pixels)), zlib.compress(pixels)),
        b"<< /Type /Metadata /Subtype /XML /Length %d >>\nstream\n%s\nendstream" % (len(xmp), xmp),
        b"<< /Title <FEFF00420069006C0061006E> /Producer (espace-sante tests) >>",
        *extra_objects,
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 8 0 R /ID [<a1b2c3d4> <a1b2c3d4>] >>\n" % (
        len(objects) + 1
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out) + trailer


REAL_PDF = _pdf()


def refusal(result: GraphQLResult) -> tuple[str, dict[str, str]]:
    """The message and extensions of a result's one error."""
    assert len(result.errors) == 1, result.errors
    return result.errors[0]["message"], result.errors[0]["extensions"]


async def nothing_stored(settings: Settings) -> None:
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


# --- active content in text files --------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"Compte rendu de consultation\n" + SCRIPT + b"\n",
        b"".join(b"ligne %d : RAS\n" % n for n in range(1, 10_000)) + SCRIPT + b"\n",
        "Lettre de liaison\nAvis : <IFRAME SRC=//evil.example>\n".encode("cp1252"),
        b"Notes\n\n<svg onload=alert(1)>\n",
        b"Notes\n<?xml version='1.0'?><html xmlns='http://www.w3.org/1999/xhtml'/>\n",
        b"Notes\n<a href=JavaScript:alert(1)>voir</a>\n",
        b"Notes\n+ADw-script+AD4-alert(1)+ADw-/script+AD4-\n",
    ],
    ids=["second-line", "10000th-line", "cp1252-iframe", "svg", "xml", "js-url", "utf-7"],
)
async def test_a_text_with_markup_on_any_line_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, settings: Settings, data: bytes
) -> None:
    alice = await make_patient()

    result = await upload(client, alice.token, data, filename="notes.txt", content_type="")

    assert result.data is None
    assert refusal(result) == (REFUSED_TYPE, {"code": "BAD_USER_INPUT", "field": "file"})
    await nothing_stored(settings)


async def test_an_rtf_with_markup_after_its_header_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    rtf = b"{\\rtf1\\ansi Compte rendu\\par\n" + SCRIPT + b"\\par}"

    result = await upload(client, alice.token, rtf, filename="cr.rtf", content_type="text/rtf")

    assert result.data is None
    assert result.codes == ["BAD_USER_INPUT"]
    await nothing_stored(settings)


async def test_an_attachment_with_markup_on_its_second_line_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    cid = (await messaging.started(client, doc, alice))["conversation"]["id"]
    before = await messaging.snapshot(settings)

    result = await messaging.send(
        client, doc.token, cid, files=[("note.txt", b"Bonjour\n" + SCRIPT, "text/plain")]
    )

    assert result.data is None
    assert messaging.error(result) == ("BAD_USER_INPUT", "attachments.0")
    assert await messaging.snapshot(settings) == before


# --- PDF + HTML polyglots ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\n<html><body>" + SCRIPT + b"</body></html>\n",
        _pdf(trailer=b"<!DOCTYPE html>\n<title>Bilan</title>\n"),
        _pdf(extra_objects=(b"(<img src=x onerror=alert(document.cookie)>)",)),
        _pdf(extra_objects=(b"<< /S /URI /URI (javascript:alert(1)) >>",)),
    ],
    ids=["pdf-then-html", "html-after-eof", "img-onerror-in-a-string", "javascript-uri"],
)
async def test_a_pdf_carrying_html_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, settings: Settings, data: bytes
) -> None:
    alice = await make_patient()

    result = await upload(client, alice.token, data, content_type="application/pdf")

    assert result.data is None
    assert refusal(result) == (REFUSED_TYPE, {"code": "BAD_USER_INPUT", "field": "file"})
    await nothing_stored(settings)


# --- what is accepted downloads sandboxed -----------------------------------------------


@pytest.mark.parametrize(
    ("data", "mime", "filename"),
    [
        (REAL_PDF, "application/pdf", "Bilan sanguin.pdf"),
        (
            b"CRP < 5 mg/L, LDL <1,6 g/L.\nDe : Dr Martin <martin@chu-lyon.fr>\n",
            "text/plain",
            "Bilan sanguin.txt",
        ),
    ],
    ids=["real-pdf", "text-with-comparisons-and-an-address"],
)
async def test_a_legitimate_file_is_accepted_and_downloads_sandboxed(
    client: httpx.AsyncClient, settings: Settings, data: bytes, mime: str, filename: str
) -> None:
    alice = await make_patient()

    result = await upload(client, alice.token, data, content_type="application/octet-stream")
    document = result.ok()["addDocument"]["document"]
    response = await download(client, document["id"], alice.token)

    assert document["mimeType"] == mime
    assert stored_files(settings) == [await blob_path(settings, data)]
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == mime
    assert response.headers["content-disposition"].startswith(
        f'attachment; filename="{filename.replace(" ", "_")}"'
    )
    assert {name: response.headers[name] for name in DOWNLOAD_HEADERS} == DOWNLOAD_HEADERS


async def test_an_attachment_downloads_sandboxed(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    files = [("bilan.pdf", REAL_PDF, "application/pdf")]
    attachment = (await messaging.started(client, doc, alice, files))["message"]["attachments"][0]

    response = await messaging.download(client, attachment["id"], alice.token)

    assert response.status_code == 200
    assert response.content == REAL_PDF
    assert response.headers["content-disposition"].startswith('attachment; filename="bilan.pdf"')
    assert {name: response.headers[name] for name in DOWNLOAD_HEADERS} == DOWNLOAD_HEADERS


# --- the per-file limit while the body streams -------------------------------------------

BOUNDARY = "espace-sante-boundary"


@pytest.fixture
async def limited_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Documents of 64 KiB at most, attachments of 16 KiB: no file part over 64 KiB."""
    app = create_app(replace(settings, max_upload_bytes=64 * KIB, max_attachment_bytes=16 * KIB))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


class StreamedUpload:
    """A multipart `addDocument` body, produced as the server pulls it; counts the bytes
    pulled."""

    def __init__(self, file_size: int, chunk: int = 16 * KIB) -> None:
        variables = {"input": {"title": "Scanner", "category": "IMAGING", "file": None}}
        self.head = (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="operations"\r\n\r\n'
            f"{json.dumps({'query': ADD, 'variables': variables})}\r\n"
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="map"\r\n\r\n'
            f"{json.dumps({'0': ['variables.input.file']})}\r\n"
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="0"; filename="scanner.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.file_size = file_size
        self.chunk = chunk
        self.pulled = 0

    @property
    def size(self) -> int:
        return len(self.head) + self.file_size + len(self.tail)

    async def body(self) -> AsyncIterator[bytes]:
        parts = [self.head, b"%PDF-1.7\n"]
        remaining = self.file_size - len(parts[1])
        for part in parts:
            self.pulled += len(part)
            yield part
        while remaining > 0:
            piece = b"0" * min(self.chunk, remaining)
            remaining -= len(piece)
            self.pulled += len(piece)
            yield piece
        self.pulled += len(self.tail)
        yield self.tail

    async def send(self, client: httpx.AsyncClient, token: str | None) -> httpx.Response:
        return await client.post(
            "/graphql",
            content=self.body(),
            headers={
                **PREFLIGHT,
                "Authorization": f"Bearer {token}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            },
        )


async def test_a_file_part_over_the_limit_is_refused_before_the_body_is_read(
    limited_client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    upload = StreamedUpload(file_size=50 * 1024 * KIB)  # 50 MB: under the 55 MB body limit

    response = await upload.send(limited_client, alice.token)

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {
        "errors": [
            {
                "message": "A file is larger than the 0.0625 MB limit.",
                "extensions": {"code": "PAYLOAD_TOO_LARGE"},
            }
        ]
    }
    # Answered once the part passed 64 KiB: at most one more chunk was pulled.
    assert upload.pulled <= len(upload.head) + 64 * KIB + upload.chunk
    assert upload.pulled < upload.size // 500
    await nothing_stored(settings)


async def test_a_file_part_of_exactly_the_limit_streams_through(
    limited_client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    at_limit = StreamedUpload(file_size=64 * KIB)
    over = StreamedUpload(file_size=64 * KIB + 1)

    refused = await over.send(limited_client, alice.token)
    accepted = await at_limit.send(limited_client, alice.token)

    assert refused.status_code == 413
    assert refused.json()["errors"][0]["extensions"] == {"code": "PAYLOAD_TOO_LARGE"}
    assert accepted.status_code == 200
    document = accepted.json()["data"]["addDocument"]["document"]
    assert (document["mimeType"], document["size"]) == ("application/pdf", 64 * KIB)
    assert at_limit.pulled == at_limit.size
    assert await DocumentModel.all().count() == 1
