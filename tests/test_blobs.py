from __future__ import annotations

import pytest

from models.blobs import sniff_mime, validate_upload
from models.errors import Invalid as BadUserInput
from models.errors import TooLarge as PayloadTooLarge

PDF_BYTES = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 16
JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 16
MB = 1024 * 1024


# Sniffing


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PDF_BYTES, "application/pdf"),
        (JPEG_BYTES, "image/jpeg"),
        (PNG_BYTES, "image/png"),
        (b"II*\x00\x08\x00\x00\x00", "image/tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "image/tiff"),
        (b"{\\rtf1\\ansi Bonjour}", "application/rtf"),
        (b"Ordonnance\r\n\tdoliprane 1 g\x0c\n", "text/plain"),
        ("Résultats : hémoglobine 13,5 g/dL ✓".encode(), "text/plain"),
        ("\ufeffavec BOM".encode(), "text/plain"),
        ("Lettre de liaison \u2013 cœur, 12 €".encode("cp1252"), "text/plain"),
        ("Comptes rendus : éèà".encode("latin-1"), "text/plain"),
        (b"", None),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", None),
        (b"MZ is printable but still a PE header", None),
        (b"\x7fELF\x02\x01\x01\x00", None),
        (b"PK\x03\x04\x14\x00\x06\x00", None),
        (b"\x1f\x8b\x08\x00", None),
        (b"GIF89a\x01\x00\x01\x00", None),
        (b"text with a NUL\x00 inside", None),
        (b"text with an escape \x1b[31m", None),
        (b"text with DEL \x7f", None),
        ("C1 control \u0085 in UTF-8".encode(), None),
        (b"undefined in cp1252: \x81", None),
        (b"#!/bin/sh\nrm -rf /\n", None),
        (b"  \n#!/usr/bin/env python\n", None),
        (b"<script>alert(1)</script>", None),
        (b"<!DOCTYPE html><html></html>", None),
        (b"<HTML><body>x</body></HTML>", None),
        (b"<?xml version='1.0'?><svg/>", None),
        (b"<svg onload=alert(1)>", None),
        ("\ufeff<html>".encode(), None),
    ],
)
def test_sniff_mime(data: bytes, expected: str | None) -> None:
    assert sniff_mime(data) == expected


def test_text_with_markup_after_the_start_is_refused() -> None:
    assert sniff_mime("Le patient a écrit <script> dans le formulaire".encode()) is None


def test_text_with_comparisons_and_bracketed_addresses_is_plain_text() -> None:
    text = "HbA1c < 7 %, CRP <5 mg/L, LDL<=1,0 g/L.\nDe : Dr Martin <martin@chu-lyon.fr>\n"

    assert sniff_mime(text.encode()) == "text/plain"


# Upload validation


def test_valid_upload_returns_the_sniffed_type() -> None:
    assert validate_upload(PDF_BYTES, declared_mime="application/pdf", max_bytes=MB) == (
        "application/pdf"
    )


@pytest.mark.parametrize("declared", [None, "", "application/octet-stream"])
def test_undeclared_type_is_taken_from_the_bytes(declared: str | None) -> None:
    assert validate_upload(PNG_BYTES, declared_mime=declared, max_bytes=MB) == "image/png"


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (JPEG_BYTES, "image/jpg"),
        (JPEG_BYTES, "IMAGE/JPEG"),
        (b"hello", "text/plain; charset=utf-8"),
        (b"{\\rtf1}", "text/rtf"),
    ],
)
def test_declared_type_aliases_and_parameters_match(data: bytes, declared: str) -> None:
    assert validate_upload(data, declared_mime=declared, max_bytes=MB) == sniff_mime(data)


def test_empty_upload_is_refused() -> None:
    with pytest.raises(BadUserInput) as exc_info:
        validate_upload(b"", declared_mime="application/pdf", max_bytes=MB, field="document")

    assert exc_info.value.message == "The file is empty."
    assert exc_info.value.field == "document"


def test_oversize_upload_is_refused_with_the_limit() -> None:
    with pytest.raises(PayloadTooLarge) as exc_info:
        validate_upload(PDF_BYTES + b"x" * (20 * MB), declared_mime=None, max_bytes=20 * MB)

    assert exc_info.value.message == "The file is larger than the 20 MB limit."
    assert exc_info.value.field == "file"


def test_upload_of_exactly_the_limit_is_accepted() -> None:
    data = PDF_BYTES + b"x" * (5 * MB - len(PDF_BYTES))

    assert validate_upload(data, declared_mime=None, max_bytes=5 * MB) == "application/pdf"


def test_fractional_limit_is_stated_in_mb() -> None:
    with pytest.raises(PayloadTooLarge) as exc_info:
        validate_upload(b"x" * MB, declared_mime=None, max_bytes=MB // 2)

    assert exc_info.value.message == "The file is larger than the 0.5 MB limit."


@pytest.mark.parametrize(
    "data",
    [
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00",
        b"\x7fELF\x02\x01\x01\x00\x00\x00",
        b"PK\x03\x04\x14\x00\x06\x00",
        b"text with a NUL\x00 inside",
    ],
)
def test_renamed_executable_or_binary_is_refused(data: bytes) -> None:
    with pytest.raises(BadUserInput) as exc_info:
        validate_upload(data, declared_mime="application/pdf", max_bytes=MB, field="file")

    assert exc_info.value.message == (
        "Unsupported file type: PDF, JPEG, PNG, TIFF, RTF or plain text is accepted."
    )
    assert exc_info.value.field == "file"


def test_declared_type_that_lies_is_refused() -> None:
    with pytest.raises(BadUserInput) as exc_info:
        validate_upload(PNG_BYTES, declared_mime="application/pdf", max_bytes=MB, field="f")

    assert exc_info.value.message == "The declared type does not match the content."
    assert exc_info.value.field == "f"


# The stores (encrypted, in a directory or S3): tests/test_blob_encryption.py and
# tests/test_s3_store.py.
