from __future__ import annotations

import hashlib
import math
import re

import pytest

from models.crypto import (
    CODE_ALPHABET,
    CODE_ENTROPY_BITS,
    DecryptionError,
    Vault,
    code_hash,
    constant_time_equals,
    new_activation_code,
    new_login_code,
    new_token,
    normalize_code,
    token_hash,
)

SECRET = "test-secret-key-of-at-least-32-characters"
OTHER_SECRET = "another-secret-key-of-32-characters-or-more"


# Encryption


def test_encrypt_then_decrypt_round_trips() -> None:
    vault = Vault(SECRET)

    blob = vault.encrypt("253072A07300443 — é", context="patient.nir:1")

    assert vault.decrypt(blob, context="patient.nir:1") == "253072A07300443 — é"


def test_ciphertext_is_version_nonce_then_sealed_plaintext() -> None:
    blob = Vault(SECRET).encrypt("abc", context="c")

    assert blob[0] == 1
    assert len(blob) == 1 + 12 + 3 + 16
    assert b"abc" not in blob


def test_same_plaintext_encrypts_differently_each_time() -> None:
    vault = Vault(SECRET)

    first = vault.encrypt("abc", context="c")
    second = vault.encrypt("abc", context="c")

    assert first[1:13] != second[1:13]
    assert first != second


def test_decrypt_with_another_context_fails() -> None:
    vault = Vault(SECRET)
    blob = vault.encrypt("abc", context="patient.nir:1")

    with pytest.raises(DecryptionError):
        vault.decrypt(blob, context="patient.nir:2")


def test_decrypt_with_another_key_fails() -> None:
    blob = Vault(SECRET).encrypt("abc", context="c")

    with pytest.raises(DecryptionError):
        Vault(OTHER_SECRET).decrypt(blob, context="c")


@pytest.mark.parametrize("index", [0, 1, 12, 13, -1])
def test_decrypt_of_a_tampered_blob_fails(index: int) -> None:
    vault = Vault(SECRET)
    blob = bytearray(vault.encrypt("abc", context="c"))
    blob[index] ^= 0x01

    with pytest.raises(DecryptionError):
        vault.decrypt(bytes(blob), context="c")


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01" + b"\x00" * 27])
def test_decrypt_of_a_truncated_blob_fails(blob: bytes) -> None:
    with pytest.raises(DecryptionError):
        Vault(SECRET).decrypt(blob, context="c")


def test_vault_needs_a_secret_and_does_not_show_it() -> None:
    with pytest.raises(ValueError):
        Vault("")
    assert SECRET not in repr(Vault(SECRET))


# Keyed hashes


def test_keyed_hash_is_stable_hex_sha256() -> None:
    vault = Vault(SECRET)

    digest = vault.keyed_hash("253072A07300443", purpose="nir")

    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert Vault(SECRET).keyed_hash("253072A07300443", purpose="nir") == digest


def test_keyed_hash_differs_by_key_and_by_purpose() -> None:
    vault = Vault(SECRET)
    digest = vault.keyed_hash("value", purpose="nir")

    assert Vault(OTHER_SECRET).keyed_hash("value", purpose="nir") != digest
    assert vault.keyed_hash("value", purpose="email-rate") != digest
    assert vault.keyed_hash("other", purpose="nir") != digest
    assert hashlib.sha256(b"value").hexdigest() != digest


def test_keyed_hash_needs_a_purpose() -> None:
    with pytest.raises(ValueError):
        Vault(SECRET).keyed_hash("value", purpose="")


# Codes and tokens


def test_code_alphabet_has_no_look_alikes() -> None:
    assert len(set(CODE_ALPHABET)) == len(CODE_ALPHABET) == 30
    assert not set(CODE_ALPHABET) & set("01OILU")
    assert CODE_ALPHABET.upper() == CODE_ALPHABET


def test_activation_code_has_at_least_40_bits_of_entropy() -> None:
    characters = len(normalize_code(new_activation_code()))

    assert characters * math.log2(len(CODE_ALPHABET)) == pytest.approx(CODE_ENTROPY_BITS)
    assert CODE_ENTROPY_BITS >= 40


def test_activation_code_format_and_alphabet() -> None:
    codes = {new_activation_code() for _ in range(200)}

    allowed = re.escape(CODE_ALPHABET)
    pattern = re.compile(rf"[{allowed}]{{4}}-[{allowed}]{{4}}-[{allowed}]{{2}}")
    assert all(pattern.fullmatch(code) for code in codes)
    assert len(codes) == 200
    assert set("".join(codes).replace("-", "")) == set(CODE_ALPHABET)


def test_normalize_code_ignores_case_spaces_and_separators() -> None:
    assert normalize_code(" abcd efgh-jk ") == "ABCDEFGHJK"
    assert normalize_code("ABCD-EFGH-JK") == "ABCDEFGHJK"
    assert normalize_code("abcd_efgh.jk\n") == "ABCDEFGHJK"


def test_login_code_is_six_digits() -> None:
    codes = [new_login_code() for _ in range(200)]

    assert all(re.fullmatch(r"[0-9]{6}", code) for code in codes)
    assert len(set(codes)) > 190


def test_token_is_256_bit_url_safe() -> None:
    token = new_token()

    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert new_token() != token


def test_token_hash_is_sha256_hex() -> None:
    assert token_hash("abc") == hashlib.sha256(b"abc").hexdigest()


def test_code_hash_is_keyed_and_loose_about_typing() -> None:
    vault = Vault(SECRET)

    digest = code_hash(vault, "ABCD-EFGH-JK")

    assert code_hash(vault, "abcd efgh jk") == digest
    assert code_hash(Vault(OTHER_SECRET), "ABCD-EFGH-JK") != digest
    assert code_hash(vault, "ABCD-EFGH-JM") != digest
    assert digest != token_hash("ABCDEFGHJK")


def test_constant_time_equals() -> None:
    assert constant_time_equals("abc", "abc")
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("abc", "abcd")
    assert constant_time_equals("é", "é")
