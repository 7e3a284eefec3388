"""Encryption at rest, keyed hashes, and the random secrets handed to users.

Every key is derived from the one SECRET_KEY with HKDF-SHA256 and a distinct `info`
label, so the encryption key and each hashing key are independent: leaking one
purpose's key (or hash) says nothing about another.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from hashlib import _Hash

_VERSION = 1
_NONCE_BYTES = 12  # 96 bits, the size AES-GCM is specified for
_TAG_BYTES = 16
_KDF_SALT = b"espace-sante/kdf/v1"
_SHA256_BLOCK = 64

# 30 characters: digits and capitals without 0/O, 1/I/L and U (U/V look alike handwritten).
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_GROUPS = (4, 4, 2)
CODE_LENGTH = sum(CODE_GROUPS)
# 10 characters * log2(30) ~= 49.1 bits, above the 40 bits DOMAIN.md asks for.
CODE_ENTROPY_BITS = CODE_LENGTH * math.log2(len(CODE_ALPHABET))
_CODE_SEPARATORS = str.maketrans("", "", " -_.\t\n\r")

LOGIN_CODE_DIGITS = 6
TOKEN_BYTES = 32  # 256 bits


class DecryptionError(Exception):
    """The blob was not produced by this key for this context, or was altered."""


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_KDF_SALT, info=info).derive(secret)


def _hmac_states(key: bytes) -> tuple[_Hash, _Hash]:
    """HMAC-SHA256's inner and outer hashes once they have read their padded key."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    block = key.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
    outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))
    return inner, outer


def row_context(table: str, column: str, row_id: object) -> str:
    """The associated data of a column's ciphertext: its table, its column and its row's key.

    E.g. "patient.nir_encrypted:<patient id>". A ciphertext copied to another row or column
    then fails to decrypt instead of revealing a value in the wrong place.
    """
    return f"{table}.{column}:{row_id}"


class Vault:
    """AES-GCM encryption of sensitive fields and purpose-bound HMAC-SHA256 hashes.

    `context` (the associated data) binds a ciphertext to where it belongs: a stored column
    uses `row_context`, so that a ciphertext copied to another row or column fails to
    decrypt instead of revealing a value in the wrong place.
    """

    __slots__ = ("_aead", "_hash_keys", "_secret")

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("secret_key must not be empty")
        self._secret = secret_key.encode()
        self._aead = AESGCM(_derive(self._secret, b"espace-sante/aes-256-gcm/v1"))
        # Per purpose, HMAC-SHA256's inner and outer hashes, their keyed block already hashed.
        self._hash_keys: dict[str, tuple[_Hash, _Hash]] = {}

    def __repr__(self) -> str:
        return "Vault(<secret>)"

    @staticmethod
    def _associated_data(context: str) -> bytes:
        # The version byte is authenticated too, so it cannot be swapped.
        return bytes([_VERSION]) + context.encode()

    def encrypt(self, plaintext: str, *, context: str) -> bytes:
        """version (1 byte) || nonce (12 bytes) || ciphertext and tag."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self._associated_data(context))
        return bytes([_VERSION]) + nonce + sealed

    def decrypt(self, blob: bytes, *, context: str) -> str:
        if len(blob) < 1 + _NONCE_BYTES + _TAG_BYTES or blob[0] != _VERSION:
            raise DecryptionError("unknown ciphertext format")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            plaintext = self._aead.decrypt(nonce, sealed, self._associated_data(context))
        except InvalidTag:
            raise DecryptionError("ciphertext does not authenticate") from None
        return plaintext.decode()

    def keyed_hash(self, value: str, *, purpose: str) -> str:
        """HMAC-SHA256 (hex) under a key of its own per purpose ("nir", "email-rate", ...)."""
        if not purpose:
            raise ValueError("purpose must not be empty")
        keyed = self._hash_keys.get(purpose)
        if keyed is None:
            key = _derive(self._secret, b"espace-sante/hmac-sha256/v1/" + purpose.encode())
            keyed = self._hash_keys[purpose] = _hmac_states(key)
        # HMAC (RFC 2104) resumed from its keyed states: the same digest as
        # hmac.digest(key, value, "sha256"), at half its cost (OpenSSL's one-shot HMAC looks
        # SHA-256 up by name at each call; every request's budget hashes two values).
        inner, outer = keyed[0].copy(), keyed[1].copy()
        inner.update(value.encode())
        outer.update(inner.digest())
        return outer.hexdigest()


# Data migrations that re-encrypt stored columns need the key, which Tortoise's migration
# runner cannot pass them: whoever runs the migrations (`espace-sante migrate`) supplies it
# with `migration_key`, and a migration reads it with `migration_vault`.
_MIGRATION_VAULT: ContextVar[Vault | None] = ContextVar("migration_vault", default=None)


@contextmanager
def migration_key(vault: Vault) -> Iterator[None]:
    """Make `vault` available to the migrations run inside this block."""
    token = _MIGRATION_VAULT.set(vault)
    try:
        yield
    finally:
        _MIGRATION_VAULT.reset(token)


def migration_vault() -> Vault | None:
    return _MIGRATION_VAULT.get()


def new_activation_code() -> str:
    """A code like "ABCD-EFGH-JK": ~49 bits of entropy, no look-alike characters."""
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    groups, start = [], 0
    for size in CODE_GROUPS:
        groups.append(chars[start : start + size])
        start += size
    return "-".join(groups)


def normalize_code(raw: str) -> str:
    """What the user typed, compared loosely: case, spaces and dashes do not matter."""
    return raw.translate(_CODE_SEPARATORS).upper()


def new_login_code() -> str:
    """The one-time code of two-factor login: 6 digits."""
    return f"{secrets.randbelow(10**LOGIN_CODE_DIGITS):0{LOGIN_CODE_DIGITS}d}"


def new_token() -> str:
    """An opaque session or link token: 256 random bits, URL-safe base64."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """SHA-256 of a token, the form stored in the database.

    A plain hash suffices here: with 256 random bits, no guess can be checked against a
    leaked hash, so a key (or a slow hash) would add nothing. Low-entropy codes are
    different: see `code_hash`.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def code_hash(vault: Vault, code: str) -> str:
    """Keyed hash of an activation or login code.

    Such codes have at most ~49 bits (6 digits: ~20), so an unkeyed hash could be reversed
    by enumeration from a database dump; the HMAC key lives outside the database.
    """
    return vault.keyed_hash(normalize_code(code), purpose="one-time-code")


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
