"""The demo's files are valid files of their formats (read back with the standard library)."""

from __future__ import annotations

import re
import struct
import zlib

from models import demo_files as files
from models.blobs import sniff_mime


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        at += 12 + length
    return chunks


def test_png_decodes_to_its_rows() -> None:
    picture = files.Raster(7, 3, rgb=True, fill=(10, 20, 30))
    picture.set(6, 2, (255, 0, 0))

    chunks = png_chunks(files.png(picture))

    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (7, 3, 8, 2, 0, 0, 0)
    raw = zlib.decompress(chunks[1][1])
    rows = [raw[i * 22 : (i + 1) * 22] for i in range(3)]
    assert [row[0] for row in rows] == [0, 0, 0]  # filter: none
    assert rows[0][1:] == bytes([10, 20, 30]) * 7
    assert rows[2][1:] == bytes([10, 20, 30]) * 6 + bytes([255, 0, 0])


def test_tiff_directory_points_at_the_pixels() -> None:
    picture = files.Raster(5, 4, fill=200)
    picture.set(0, 0, 0)

    data = files.tiff(picture)

    assert data[:4] == b"II*\x00"
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    entries = {}
    for n in range(count):
        tag, kind, _, value = struct.unpack("<HHII", data[ifd + 2 + 12 * n : ifd + 14 + 12 * n])
        entries[tag] = value & 0xFFFF if kind == 3 else value
    assert sorted(entries) == list(entries)  # tags in ascending order, as TIFF requires
    assert (entries[256], entries[257], entries[258], entries[259]) == (5, 4, 8, 1)
    strip = data[entries[273] : entries[273] + entries[279]]
    assert strip == bytes([0]) + bytes([200]) * 19
    assert struct.unpack("<II", data[entries[282] : entries[282] + 8]) == (100, 1)


def test_jpeg_is_baseline_with_its_size_and_ends() -> None:
    picture = files.Raster(21, 13)
    picture.line(0, 0, 20, 12, 0, width=2)

    data = files.jpeg(picture)

    assert data.startswith(b"\xff\xd8\xff\xe0") and data.endswith(b"\xff\xd9")
    start = data.index(b"\xff\xc0")
    assert struct.unpack(">BHHB", data[start + 4 : start + 10]) == (8, 13, 21, 1)
    scan = data[data.index(b"\xff\xda") + 10 : -2]
    assert re.search(rb"\xff[^\x00]", scan) is None  # every 0xFF in the scan is stuffed
    assert data.count(b"\xff\xc4") == 2  # the DC and AC tables


def test_pdf_cross_reference_points_at_each_object() -> None:
    data = files.pdf(
        "Ordonnance",
        ["Ligne une", "# Titre", "Œdème (léger) \\ fin"],
        author="Dr A",
        date="20260101",
    )

    assert data.startswith(b"%PDF-1.4\n") and data.endswith(b"%%EOF\n")
    (xref,) = re.findall(rb"startxref\n(\d+)\n", data)
    table = data[int(xref) :]
    assert table.startswith(b"xref\n0 8\n")
    offsets = [int(line[:10]) for line in table.splitlines()[3:10]]
    for number, offset in enumerate(offsets, start=1):
        assert data[offset:].startswith(b"%d 0 obj\n" % number)
    (length,) = re.findall(rb"<< /Length (\d+) >>\nstream\n", data)
    stream = data.split(b"stream\n", 1)[1]
    assert stream[int(length) :].startswith(b"\nendstream")
    assert b"(\x8cd\xe8me \\(l\xe9ger\\) \\\\ fin) Tj" in stream  # WinAnsi, escaped


def test_rtf_and_text_escape_what_they_must() -> None:
    rtf = files.rtf("Lettre {de} liaison", ["Chère consœur, \\ fin"])
    text = files.text(["Relevés : 142/88"])

    assert rtf.startswith(b"{\\rtf1\\ansi\\ansicpg1252")
    assert b"Lettre \\{de\\} liaison" in rtf
    assert b"Ch\\'e8re cons\\'9cur, \\\\ fin\\par" in rtf
    assert rtf.count(b"{") - rtf.count(b"\\{") == rtf.count(b"}") - rtf.count(b"\\}")
    assert text == "Relevés : 142/88\n".encode()


def test_every_demo_picture_is_sniffed_as_its_type() -> None:
    made = {
        "image/png": files.png(files.ecg_picture("ECG")),
        "image/jpeg": files.jpeg(files.chest_xray_picture("THORAX")),
        "image/tiff": files.tiff(files.paper_picture("Attestation", ["ligne"])),
        "application/pdf": files.pdf("Titre", ["ligne"], author="A", date="20260101"),
        "application/rtf": files.rtf("Titre", ["ligne"]),
        "text/plain": files.text(["ligne"]),
    }

    assert {mime: sniff_mime(data) for mime, data in made.items()} == {m: m for m in made}
    assert files.png(files.ecg_picture("ECG")) == made["image/png"]  # same input, same bytes
