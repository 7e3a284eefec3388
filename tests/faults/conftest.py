"""The fault suite: run by .ci/run (CI=true) with FAULT_SUITE=1; skipped otherwise, for it
stops and restarts servers and takes minutes. Run it by hand with
`FAULT_SUITE=1 .venv/bin/pytest tests/faults -m faults`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer
from tests.seaweed import Seaweed, running_seaweed

ENABLED = os.environ.get("FAULT_SUITE") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="the fault suite runs with FAULT_SUITE=1 (.ci/run, CI=true)")
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.faults)
            if not ENABLED:
                item.add_marker(skip)


@pytest.fixture
def weed(tmp_path: Path) -> Iterator[Seaweed]:
    """A SeaweedFS of this test's own, which it may kill, freeze and restart."""
    with running_seaweed(tmp_path / "seaweed") as server:
        yield server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except FileNotFoundError:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed", pytrace=False)
        pytest.skip("redis-server is not installed")
    server.start()
    try:
        yield server
    finally:
        server.stop()
