"""Small, valid files for the demo dossier, made in code: PDF, PNG, JPEG, TIFF, RTF and text.

Nothing here reads the disk or a library beyond the standard one: each writer produces the
smallest correct form of its format (a one-page PDF in the standard Helvetica fonts, an
8-bit PNG, a baseline grayscale JPEG with the standard Huffman tables, an uncompressed
grayscale TIFF), so that every file opens in an ordinary viewer. `Raster` draws the pictures
(lines, shapes and text in a 5x7 pixel font). The output depends on the arguments only, so
a file made twice has the same bytes (and the same SHA-256).
"""

from __future__ import annotations

import itertools
import math
import operator
import struct
import unicodedata
import zlib
from collections.abc import Callable, Iterable

# --- pictures ---------------------------------------------------------------------------

# A 5x7 pixel font: seven rows of five bits per glyph, top row first.
_GLYPHS = {
    "A": "01110 10001 10001 10001 11111 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "'": "01100 00100 01000 00000 00000 00000 00000",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "%": "11000 11001 00010 00100 01000 10011 00011",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    "=": "00000 00000 11111 00000 11111 00000 00000",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}

Color = int | tuple[int, int, int]


def _plain(text: str) -> str:
    """Upper case without accents: what the 5x7 font draws."""
    decomposed = unicodedata.normalize("NFKD", text.upper())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Raster:
    """An 8-bit picture, grayscale (one channel) or RGB (three), row by row."""

    def __init__(self, width: int, height: int, *, rgb: bool = False, fill: Color = 255) -> None:
        self.width = width
        self.height = height
        self.channels = 3 if rgb else 1
        self.pixels = bytearray(self._bytes(fill) * (width * height))

    def _bytes(self, color: Color) -> bytes:
        if isinstance(color, int):
            return bytes([color] * self.channels)
        if self.channels == 1:
            r, g, b = color
            return bytes([round(0.299 * r + 0.587 * g + 0.114 * b)])
        return bytes(color)

    def set(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            start = (y * self.width + x) * self.channels
            self.pixels[start : start + self.channels] = self._bytes(color)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill the rectangle from (x0, y0) included to (x1, y1) excluded."""
        value = self._bytes(color)
        x0, x1 = max(0, x0), min(self.width, x1)
        for y in range(max(0, y0), min(self.height, y1)):
            start = (y * self.width + x0) * self.channels
            self.pixels[start : start + (x1 - x0) * self.channels] = value * (x1 - x0)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, width: int = 1) -> None:
        """Bresenham's line, `width` pixels thick."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        error = dx + dy
        half = width // 2
        while True:
            self.rect(x0 - half, y0 - half, x0 - half + width, y0 - half + width, color)
            if x0 == x1 and y0 == y1:
                return
            doubled = 2 * error
            if doubled >= dy:
                error += dy
                x0 += sx
            if doubled <= dx:
                error += dx
                y0 += sy

    def polyline(self, points: list[tuple[int, int]], color: Color, width: int = 1) -> None:
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            self.line(x0, y0, x1, y1, color, width)

    def shade(self, value: Callable[[int, int], float]) -> None:
        """Grayscale only: every pixel from a function of its position (0 black, 255 white)."""
        assert self.channels == 1
        for y in range(self.height):
            row = y * self.width
            for x in range(self.width):
                self.pixels[row + x] = max(0, min(255, round(value(x, y))))

    def text(self, x: int, y: int, text: str, color: Color, scale: int = 1) -> int:
        """Draw one line from its top-left corner; answers the x where it ends."""
        for char in _plain(text):
            rows = _GLYPHS.get(char, _GLYPHS["?"]).split()
            for j, bits in enumerate(rows):
                for i, bit in enumerate(bits):
                    if bit == "1":
                        px, py = x + i * scale, y + j * scale
                        self.rect(px, py, px + scale, py + scale, color)
            x += 6 * scale
        return x

    def rows(self) -> Iterable[bytes]:
        stride = self.width * self.channels
        for y in range(self.height):
            yield bytes(self.pixels[y * stride : (y + 1) * stride])


# --- PNG --------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(picture: Raster) -> bytes:
    """8 bits per sample, grayscale or RGB, no filtering, one IDAT."""
    color_type = 2 if picture.channels == 3 else 0
    header = struct.pack(">IIBBBBB", picture.width, picture.height, 8, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in picture.rows())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


# --- TIFF -------------------------------------------------------------------------------


def tiff(picture: Raster, *, dpi: int = 100) -> bytes:
    """Baseline grayscale TIFF, little-endian, uncompressed, one strip."""
    assert picture.channels == 1
    data = b"".join(picture.rows())
    short, long_, rational = 3, 4, 5
    count = 12
    ifd_size = 2 + count * 12 + 4
    resolution_at = 8 + ifd_size
    strip_at = resolution_at + 16
    entries = [
        (256, long_, picture.width),  # ImageWidth
        (257, long_, picture.height),  # ImageLength
        (258, short, 8),  # BitsPerSample
        (259, short, 1),  # Compression: none
        (262, short, 1),  # PhotometricInterpretation: BlackIsZero
        (273, long_, strip_at),  # StripOffsets
        (277, short, 1),  # SamplesPerPixel
        (278, long_, picture.height),  # RowsPerStrip
        (279, long_, len(data)),  # StripByteCounts
        (282, rational, resolution_at),  # XResolution
        (283, rational, resolution_at + 8),  # YResolution
        (296, short, 2),  # ResolutionUnit: inch
    ]
    assert len(entries) == count
    out = bytearray(b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", count))
    for tag, kind, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == short else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, 1) + packed
    out += struct.pack("<I", 0)  # no further IFD
    out += struct.pack("<II", dpi, 1) * 2
    assert len(out) == strip_at
    return bytes(out + data)


# --- JPEG -------------------------------------------------------------------------------

# ITU T.81 annex K: the example luminance quantisation table and Huffman tables.
_QUANT = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_ZIGZAG = (
    *(0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5),
    *(12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28),
    *(35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51),
    *(58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63),
)
_DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_DC_VALUES = tuple(range(12))
_AC_BITS = (0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D)
_AC_VALUES = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
    "2433627282090a161718191a25262728292a3435363738393a434445464748494a"
    "535455565758595a636465666768696a737475767778797a838485868788898a"
    "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7"
    "c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
)
_DCT = [
    [
        (math.sqrt(0.5) if u == 0 else 1.0) / 2 * math.cos((2 * x + 1) * u * math.pi / 16)
        for x in range(8)
    ]
    for u in range(8)
]


def _huffman(bits: tuple[int, ...], values: Iterable[int]) -> dict[int, tuple[int, int]]:
    """The canonical code of each value: (code, length)."""
    codes: dict[int, tuple[int, int]] = {}
    ordered = iter(values)
    code = 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            codes[next(ordered)] = (code, length)
            code += 1
        code <<= 1
    return codes


_DC_CODES = _huffman(_DC_BITS, _DC_VALUES)
_AC_CODES = _huffman(_AC_BITS, _AC_VALUES)


class _Bits:
    def __init__(self) -> None:
        self.out = bytearray()
        self.value = 0
        self.count = 0

    def put(self, code: int, length: int) -> None:
        self.value = (self.value << length) | (code & ((1 << length) - 1))
        self.count += length
        while self.count >= 8:
            self.count -= 8
            byte = (self.value >> self.count) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)  # byte stuffing
        self.value &= (1 << self.count) - 1

    def flush(self) -> bytes:
        if self.count:
            self.put((1 << (8 - self.count)) - 1, 8 - self.count)  # pad with ones
        return bytes(self.out)


def _magnitude(value: int) -> tuple[int, int]:
    """JPEG's (size, bits) of a coefficient: negative values as value - 1 in `size` bits."""
    size = abs(value).bit_length()
    return size, (value if value >= 0 else value - 1 + (1 << size))


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(payload) + 2) + payload


def jpeg(picture: Raster, *, quality: int = 85) -> bytes:
    """Baseline JPEG (JFIF), one grayscale component, the annex K Huffman tables."""
    assert picture.channels == 1
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    quant = [
        max(1, min(255, (_QUANT[i // 8][i % 8] * scale + 50) // 100)) for i in range(64)
    ]  # natural order
    width, height = picture.width, picture.height
    # Padded to whole 8x8 blocks by repeating the last row and column.
    padded_width = -(-width // 8) * 8
    rows_of_pixels = [
        [value - 128 for value in row] + [row[-1] - 128] * (padded_width - width)
        for row in picture.rows()
    ]
    rows_of_pixels += [rows_of_pixels[-1]] * (-(-height // 8) * 8 - height)
    bits = _Bits()
    previous_dc = 0
    for by in range(0, height, 8):
        band = rows_of_pixels[by : by + 8]
        for bx in range(0, width, 8):
            block = [row[bx : bx + 8] for row in band]
            first = block[0][0]
            coefficients = [0] * 64
            if all(value == first for row in block for value in row):
                coefficients[0] = round(8 * first / quant[0])  # flat: the mean only
            else:
                # 2-D DCT as two passes of the 1-D one: rows, then columns.
                passed = [[sum(map(operator.mul, basis, row)) for basis in _DCT] for row in block]
                for u, column in enumerate(zip(*passed, strict=True)):
                    for v, basis in enumerate(_DCT):
                        index = v * 8 + u
                        coefficients[index] = round(
                            sum(map(operator.mul, basis, column)) / quant[index]
                        )
            zigzag = [coefficients[i] for i in _ZIGZAG]
            size, extra = _magnitude(zigzag[0] - previous_dc)
            previous_dc = zigzag[0]
            bits.put(*_DC_CODES[size])
            if size:
                bits.put(extra, size)
            run = 0
            for coefficient in zigzag[1:]:
                if coefficient == 0:
                    run += 1
                    continue
                while run > 15:
                    bits.put(*_AC_CODES[0xF0])  # sixteen zeros
                    run -= 16
                size, extra = _magnitude(coefficient)
                bits.put(*_AC_CODES[(run << 4) | size])
                bits.put(extra, size)
                run = 0
            if run:
                bits.put(*_AC_CODES[0x00])  # end of block
    return b"".join(
        [
            b"\xff\xd8",
            _segment(0xE0, b"JFIF\x00\x01\x01\x01" + struct.pack(">HH", 96, 96) + b"\x00\x00"),
            _segment(0xDB, b"\x00" + bytes(quant[i] for i in _ZIGZAG)),
            _segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
            _segment(0xC4, b"\x00" + bytes(_DC_BITS) + bytes(_DC_VALUES)),
            _segment(0xC4, b"\x10" + bytes(_AC_BITS) + _AC_VALUES),
            _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            bits.flush(),
            b"\xff\xd9",
        ]
    )


# --- PDF --------------------------------------------------------------------------------

_PAGE_WIDTH, _PAGE_HEIGHT = 595, 842  # A4 in points
_MARGIN = 56
_WRAP = 92  # characters of 10.5 pt Helvetica that fit between the margins, roughly


def _pdf_text(text: str) -> bytes:
    """A literal string in WinAnsiEncoding (what the standard fonts use for French)."""
    encoded = text.encode("cp1252", errors="replace")
    return b"(" + encoded.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _pdf_info_text(text: str) -> bytes:
    """A text string for the document information: UTF-16BE with its byte order mark."""
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"


def _wrap(line: str) -> list[str]:
    words, lines, current = line.split(" "), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > _WRAP:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current]


def pdf(title: str, lines: list[str], *, author: str, date: str) -> bytes:
    """A one-page A4 PDF: a bold title, then the lines (wrapped); `date` as YYYYMMDD.

    An empty line leaves a gap; a line starting with "# " is a bold heading.
    """
    ops = [b"BT", b"/F2 15 Tf", b"%d %d Td" % (_MARGIN, _PAGE_HEIGHT - _MARGIN - 15)]
    ops += [_pdf_text(title) + b" Tj", b"/F1 10.5 Tf", b"15 TL", b"T*", b"T*"]
    for line in lines:
        if line.startswith("# "):
            ops += [b"T*", b"/F2 11 Tf", _pdf_text(line[2:]) + b" Tj", b"T*", b"/F1 10.5 Tf"]
            continue
        for part in _wrap(line) if line else [""]:
            ops += [_pdf_text(part) + b" Tj", b"T*"]
    ops.append(b"ET")
    content = b"\n".join(ops)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] " % (_PAGE_WIDTH, _PAGE_HEIGHT)
        + b"/Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> /Contents 6 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Title "
        + _pdf_info_text(title)
        + b" /Author "
        + _pdf_info_text(author)
        + b" /Producer "
        + _pdf_info_text("Mon espace santé (démo)")
        + b" /CreationDate (D:"
        + date.encode("ascii")
        + b"120000Z) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\n" % (
        len(objects) + 1,
        len(objects),
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


# --- RTF and text -----------------------------------------------------------------------


def _rtf_text(text: str) -> str:
    out = []
    for char in text:
        if char in "\\{}":
            out.append("\\" + char)
        elif ord(char) < 128:
            out.append(char)
        else:
            encoded = char.encode("cp1252", errors="replace")
            out.append("".join(f"\\'{byte:02x}" for byte in encoded))
    return "".join(out)


def rtf(title: str, paragraphs: list[str]) -> bytes:
    """An RTF document (what hospital software often exports): a bold title, paragraphs."""
    body = "".join(f"{_rtf_text(p)}\\par\n" for p in paragraphs)
    return (
        "{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0\\fswiss Helvetica;}}\n"
        f"\\f0\\fs22{{\\b\\fs28 {_rtf_text(title)}\\par}}\n\\par\n{body}}}\n"
    ).encode("ascii")


def text(lines: list[str]) -> bytes:
    """Plain UTF-8 text, one line each."""
    return ("\n".join(lines) + "\n").encode("utf-8")


# --- the demo's pictures ----------------------------------------------------------------

_ECG_PINK = (253, 232, 232)
_ECG_GRID = (244, 190, 190)
_ECG_GRID_BOLD = (226, 140, 140)


def _heartbeat(t: float) -> float:
    """One cardiac cycle (t from 0 to 1) in millivolts: P wave, QRS complex, T wave."""
    bumps = ((0.12, 0.025, 0.15), (0.27, 0.008, -0.12), (0.30, 0.010, 1.3), (0.33, 0.008, -0.3))
    value = sum(a * math.exp(-(((t - c) / w) ** 2)) for c, w, a in bumps)
    return value + 0.3 * math.exp(-(((t - 0.55) / 0.05) ** 2))


def ecg_picture(caption: str, *, beats_per_minute: int = 72) -> Raster:
    """An ECG strip on its pink millimetre grid (25 mm/s, 10 mm/mV at 4 px per mm)."""
    picture = Raster(800, 300, rgb=True, fill=_ECG_PINK)
    for x in range(0, 800, 4):
        picture.rect(x, 0, x + 1, 300, _ECG_GRID_BOLD if x % 20 == 0 else _ECG_GRID)
    for y in range(0, 300, 4):
        picture.rect(0, y, 800, y + 1, _ECG_GRID_BOLD if y % 20 == 0 else _ECG_GRID)
    picture.rect(8, 8, 8 + 6 * 2 * len(caption) + 8, 30, (255, 255, 255))
    picture.text(12, 12, caption, (40, 40, 40), scale=2)
    baseline, period = 190, 100 * 60 / beats_per_minute  # 100 px a second
    points = [
        (x, round(baseline - 40 * _heartbeat(((x - 20) % period) / period))) for x in range(20, 800)
    ]
    picture.polyline(points, (20, 20, 20), width=2)
    return picture


def chest_xray_picture(caption: str) -> Raster:
    """A frontal chest radiograph, schematic: lungs, ribs, spine, heart and a side marker."""
    size = 320
    picture = Raster(size, size)

    def density(x: int, y: int) -> float:
        cx = size / 2
        body = 1 - min(1.0, ((x - cx) / 150) ** 2)  # soft tissue, thinner at the edges
        value = 30 + 90 * body
        for side in (-1, 1):  # the lungs: dark (air lets the rays through)
            lx, ly = cx + side * 62, 165
            inside = ((x - lx) / 52) ** 2 + ((y - ly) / 105) ** 2
            if inside < 1:
                value -= 55 * (1 - inside) ** 0.5
                # the ribs: bright arcs across each lung
                phase = (y - 60 - 0.3 * abs(x - cx) + 0.004 * (x - lx) ** 2) / 22
                value += 45 * max(0.0, math.cos(phase * 2 * math.pi)) ** 6
        value += 95 * math.exp(-(((x - cx) / 16) ** 2))  # the spine
        heart = ((x - cx - 22) / 58) ** 2 + ((y - 225) / 55) ** 2
        if heart < 1:
            value += 60 * (1 - heart) ** 0.5
        if y > 280:  # the diaphragm and the abdomen below
            value += (y - 280) * 2.2
        return value

    picture.shade(density)
    picture.text(18, 18, "D", 255, scale=3)
    picture.text(18, size - 26, caption, 235, scale=1)
    return picture


def paper_picture(
    heading: str, lines: list[str], *, width: int = 480, height: int = 320, photo: bool = False
) -> Raster:
    """A page of text, scanned (white, sharp) or photographed (`photo`: uneven light)."""
    picture = Raster(width, height)
    if photo:
        picture.shade(lambda x, y: 232 - 38 * ((x / width - 0.35) ** 2 + (y / height - 0.3) ** 2))
    picture.text(24, 20, heading, 20, scale=2)
    picture.rect(24, 42, width - 24, 43, 90)
    scale = 2 if max(map(len, lines), default=0) * 12 <= width - 48 else 1
    y = 56
    for line in lines:
        picture.text(24, y, line, 45, scale=scale)
        y += 10 * scale + 4
    return picture


# Median height in cm at each whole age from 0 to 12 (WHO growth standards, rounded).
_MEDIAN_HEIGHT = (50, 75, 87, 96, 103, 110, 116, 122, 128, 133, 138, 143, 149)


def growth_chart_picture(caption: str, ages: list[float], heights: list[float]) -> Raster:
    """A height-for-age chart, 0 to 12 years: reference bands and the child's own curve."""
    picture = Raster(480, 360, rgb=True, fill=(255, 255, 255))
    left, bottom, right, top = 48, 320, 460, 40

    def at(age: float, height_cm: float) -> tuple[int, int]:
        x = left + (right - left) * age / 12
        y = bottom - (bottom - top) * (height_cm - 45) / (160 - 45)
        return round(x), round(y)

    for age in range(13):
        x, _ = at(age, 45)
        picture.rect(x, top, x + 1, bottom, (225, 225, 235))
        picture.text(x - 5, bottom + 8, str(age), (80, 80, 80))
    for height_cm in range(50, 161, 10):
        _, y = at(0, height_cm)
        picture.rect(left, y, right, y + 1, (225, 225, 235))
        picture.text(12, y - 3, str(height_cm), (80, 80, 80))

    def reference(age: float, shift: float) -> float:  # median height, +/- 2 SD
        low = min(int(age), 11)
        median = _MEDIAN_HEIGHT[low] + (age - low) * (_MEDIAN_HEIGHT[low + 1] - _MEDIAN_HEIGHT[low])
        return median + shift * (1.5 + 0.45 * age)

    for shift, color in ((-2, (170, 200, 235)), (0, (90, 140, 210)), (2, (170, 200, 235))):
        picture.polyline(
            [at(a / 10, reference(a / 10, shift)) for a in range(0, 121)], color, width=2
        )
    picture.polyline([at(a, h) for a, h in zip(ages, heights, strict=True)], (200, 40, 40), 3)
    for a, h in zip(ages, heights, strict=True):
        x, y = at(a, h)
        picture.rect(x - 3, y - 3, x + 4, y + 4, (200, 40, 40))
    picture.text(left, 14, caption, (30, 30, 30), scale=2)
    return picture
