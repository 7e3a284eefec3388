"""Encryption at rest of document and attachment bytes (models/blobs.py).

Each blob gets a data key of its own (AES-256-GCM), used for that blob only. The data key is
kept in the database, wrapped (AES-256-GCM too) by a master key and tagged with that key's
id; the object store holds nothing but ciphertext under a random name. A new master key
therefore re-wraps data keys (a few bytes a row) without rewriting any blob, and a stolen
disk or bucket, without the master key, reveals neither the bytes nor which document a
name holds.

A blob is encrypted as a stream of fixed-size segments, so that neither an upload nor a
download ever holds more than a segment of it in a second copy (the STREAM construction,
Hoang, Reyhanitabar, Rogaway and Vizár, 2015):

    header   = "ESB1" | segment size (uint32, big-endian) | nonce prefix (7 random bytes)
    segment  = AES-GCM(data key, nonce = prefix | index (uint32) | final flag (1 byte),
                       plaintext of `segment size` bytes (less for the final one),
                       associated data = header)

The index in each nonce makes reordered or repeated segments fail; the final flag, which
only the last segment carries, makes a truncated object (cut at a segment boundary) fail
rather than decrypt to a shorter file; the header, authenticated with every segment, cannot
be changed either.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Iterator, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"ESB1"
SEGMENT_SIZE = 64 * 1024
_PREFIX_BYTES = 7
HEADER_SIZE = len(MAGIC) + 4 + _PREFIX_BYTES
TAG_SIZE = 16
KEY_SIZE = 32
_NONCE_SIZE = 12
_MIN_SEGMENT, _MAX_SEGMENT = 1024, 16 * 1024 * 1024
_WRAP_CONTEXT = b"espace-sante/blob-data-key/v1:"
_KDF_SALT = b"espace-sante/kdf/v1"  # as models/crypto.py: one salt, a distinct label each


class BlobCorrupted(Exception):
    """Stored bytes that do not decrypt: altered, truncated, reordered, or another blob's."""


class UnknownMasterKey(Exception):
    """A data key wrapped by a master key that is not configured (BLOB_OLD_MASTER_KEYS)."""


def derive_master_key(secret_key: str) -> bytes:
    """The master key when BLOB_MASTER_KEY is not set: derived from SECRET_KEY (HKDF)."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_SIZE,
        salt=_KDF_SALT,
        info=b"espace-sante/blob-master-key/v1",
    ).derive(secret_key.encode())


def parse_master_key(text: str) -> bytes:
    """A master key as configured: 32 bytes in base64 (standard or URL-safe) or hex."""
    value = text.strip()
    if len(value) == 2 * KEY_SIZE:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    try:
        standard = value.replace("-", "+").replace("_", "/").rstrip("=")
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_SIZE:
        raise ValueError("a master key is 32 random bytes, in base64 or hexadecimal")
    return key


def key_id(master_key: bytes) -> str:
    """A short name for a master key that reveals nothing of it (kept with each data key)."""
    return hmac.new(master_key, b"espace-sante/blob-master-key-id", hashlib.sha256).hexdigest()[:16]


class Keyring:
    """The master key that wraps new data keys, and older ones that still unwrap theirs."""

    __slots__ = ("_keys", "current_id")

    def __init__(self, current: bytes, retired: Sequence[bytes] = ()) -> None:
        if len(current) != KEY_SIZE or any(len(k) != KEY_SIZE for k in retired):
            raise ValueError("a master key is 32 bytes")
        self.current_id = key_id(current)
        self._keys = {key_id(k): AESGCM(k) for k in retired}
        self._keys[self.current_id] = AESGCM(current)

    def __repr__(self) -> str:
        return f"Keyring(current={self.current_id}, known={len(self._keys)})"

    def knows(self, kid: str) -> bool:
        return kid in self._keys

    def wrap(self, data_key: bytes, name: str) -> tuple[str, bytes]:
        """(key id, wrapped key) for the blob stored as `name` (bound to it)."""
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._keys[self.current_id].encrypt(nonce, data_key, _WRAP_CONTEXT + name.encode())
        return self.current_id, nonce + sealed

    def unwrap(self, kid: str, wrapped: bytes, name: str) -> bytes:
        aead = self._keys.get(kid)
        if aead is None:
            raise UnknownMasterKey(kid)
        try:
            data_key = aead.decrypt(
                wrapped[:_NONCE_SIZE], wrapped[_NONCE_SIZE:], _WRAP_CONTEXT + name.encode()
            )
        except InvalidTag:
            raise BlobCorrupted(f"the data key of {name} does not unwrap") from None
        if len(data_key) != KEY_SIZE:
            raise BlobCorrupted(f"the data key of {name} is malformed")
        return data_key


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=8 * KEY_SIZE)


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if final else 0)


def segment_count(size: int, segment_size: int = SEGMENT_SIZE) -> int:
    return max(1, -(-size // segment_size))


def encrypted_size(size: int, segment_size: int = SEGMENT_SIZE) -> int:
    """The size of the stored object for `size` bytes of plaintext."""
    return HEADER_SIZE + size + TAG_SIZE * segment_count(size, segment_size)


def encrypt(
    data_key: bytes,
    data: bytes | memoryview,
    *,
    segment_size: int = SEGMENT_SIZE,
    batch: int = 16,
) -> Iterator[bytes]:
    """The object for `data`: the header, then the sealed segments, `batch` of them joined per
    item (a few hundred KB: few writes, and no second copy of the whole)."""
    view = memoryview(data)
    prefix = os.urandom(_PREFIX_BYTES)
    header = MAGIC + struct.pack(">I", segment_size) + prefix
    aead = AESGCM(data_key)
    count = segment_count(len(view), segment_size)
    pending: list[bytes] = [header]
    for index in range(count):
        chunk = view[index * segment_size : (index + 1) * segment_size]
        final = index == count - 1
        pending.append(aead.encrypt(_nonce(prefix, index, final), chunk, header))
        if len(pending) >= batch or final:
            yield b"".join(pending)
            pending = []


class Decryptor:
    """Decrypts an object fed in pieces of any size; `finish` checks it ended where it should.

    A segment is only known not to be the final one once bytes beyond it have arrived, so
    one segment is held back until then.
    """

    __slots__ = ("_aead", "_buffer", "_header", "_index", "_prefix", "_sealed")

    def __init__(self, data_key: bytes) -> None:
        self._aead = AESGCM(data_key)
        self._buffer = bytearray()
        self._header: bytes | None = None
        self._prefix = b""
        self._sealed = 0
        self._index = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The plaintext segments these bytes complete (each is known not to be the last)."""
        self._buffer += data
        if self._header is None:
            if len(self._buffer) < HEADER_SIZE:
                return
            self._read_header()
        while len(self._buffer) > self._sealed:
            segment = bytes(self._buffer[: self._sealed])
            del self._buffer[: self._sealed]
            yield self._open(segment, final=False)

    def finish(self) -> bytes:
        """The last segment; raises if the object was cut short."""
        if self._header is None or len(self._buffer) < TAG_SIZE:
            raise BlobCorrupted("the object is truncated")
        segment = bytes(self._buffer)
        self._buffer.clear()
        return self._open(segment, final=True)

    def _read_header(self) -> None:
        header = bytes(self._buffer[:HEADER_SIZE])
        if header[: len(MAGIC)] != MAGIC:
            raise BlobCorrupted("not an encrypted blob")
        (segment_size,) = struct.unpack(">I", header[len(MAGIC) : len(MAGIC) + 4])
        if not _MIN_SEGMENT <= segment_size <= _MAX_SEGMENT:
            raise BlobCorrupted("implausible segment size")
        self._header = header
        self._prefix = header[len(MAGIC) + 4 :]
        self._sealed = segment_size + TAG_SIZE
        del self._buffer[:HEADER_SIZE]

    def _open(self, segment: bytes, *, final: bool) -> bytes:
        assert self._header is not None
        try:
            plain = self._aead.decrypt(
                _nonce(self._prefix, self._index, final), segment, self._header
            )
        except InvalidTag:
            where = "final " if final else ""
            raise BlobCorrupted(f"{where}segment {self._index} does not authenticate") from None
        self._index += 1
        return plain


def decrypt(data_key: bytes, blob: bytes) -> bytes:
    """A whole object at once (tests, small blobs)."""
    decryptor = Decryptor(data_key)
    parts = list(decryptor.feed(blob))
    parts.append(decryptor.finish())
    return b"".join(parts)
