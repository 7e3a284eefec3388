"""The budget's address digests, kept per address: the same as hashed anew each time."""

from __future__ import annotations

from api.budget import MemoryBuckets, RequestBudget
from api.config import Settings
from models.crypto import Vault
from tests.conftest import SECRET


def test_kept_address_digests_are_the_keyed_hashes() -> None:
    budget = RequestBudget(
        Settings(environment="test", secret_key=SECRET), Vault(SECRET), MemoryBuckets()
    )
    for address in ("203.0.113.7", "2001:db8::1", "unknown", "203.0.113.7"):
        expected = budget.vault.keyed_hash(address, purpose="request-budget-address")[:32]
        assert budget.caller(None, address).address == expected
        assert budget.caller("a-token", address).address == expected
