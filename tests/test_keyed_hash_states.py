"""`Vault.keyed_hash` resumes HMAC-SHA256 from precomputed keyed states: the digests must
be HMAC's, for every purpose, value and key length."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from models.crypto import Vault, _derive, _hmac_states


@pytest.mark.parametrize("value", ["", "a", "127.0.0.1", "é" * 100, "x" * 1000])
@pytest.mark.parametrize("purpose", ["nir", "request-budget-session", "login-email"])
def test_keyed_hash_is_hmac_sha256_of_the_purposes_key(purpose: str, value: str) -> None:
    vault = Vault("a secret")
    key = _derive(b"a secret", b"espace-sante/hmac-sha256/v1/" + purpose.encode())

    digest = vault.keyed_hash(value, purpose=purpose)

    assert digest == hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
    assert vault.keyed_hash(value, purpose=purpose) == digest  # the states are not consumed


@pytest.mark.parametrize("size", [0, 1, 32, 63, 64, 65, 200])
def test_hmac_states_follow_rfc_2104_for_any_key_length(size: int) -> None:
    key = bytes(range(256))[:size]
    inner, outer = _hmac_states(key)

    inner.update(b"message")
    outer.update(inner.digest())

    assert outer.hexdigest() == hmac.new(key, b"message", hashlib.sha256).hexdigest()


def test_keyed_hash_still_refuses_an_empty_purpose() -> None:
    with pytest.raises(ValueError, match="purpose"):
        Vault("a secret").keyed_hash("value", purpose="")
