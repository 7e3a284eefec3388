"""What the fault suite stops and restarts: a PostgreSQL cluster of its own (never the shared
instance on 5432), a SeaweedFS (tests/seaweed.py), a Redis (tests/redis_server.py), and
servers (tests/e2e/live_support.py); and a client that tells every answer apart.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.seaweed import free_ports

START_TIMEOUT = 30.0


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


class PrivatePostgres:
    """`initdb` in a temporary folder, then `pg_ctl` start/stop on a free loopback port, as
    the `postgres` user when the tests run as root (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
            if os.environ.get("CI") == "true":
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.as_root = os.geteuid() == 0
        # Not under pytest's tmp_path: its root-only parents would keep `postgres` out.
        self.root = Path(tempfile.mkdtemp(prefix="espace-sante-pg-"))
        self.data = self.root / "data"
        self.port = free_ports(1)[0]
        if self.as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        done = subprocess.run(
            [*prefix, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
            "-w", "-t", str(int(START_TIMEOUT)), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """fast: clients are disconnected, a clean shutdown; immediate: as a crash."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


# --- answers ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One request's answer: `ok` (data, no error), `unavailable` (503 SERVICE_UNAVAILABLE
    with Retry-After), or anything else, kept whole for the failure message."""

    kind: str
    seconds: float
    status: int = 0
    body: Any = None


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [o.kind for o in self.outcomes]

    def unexpected(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind not in {"ok", "unavailable"}]


def classify(response: httpx.Response, seconds: float) -> Outcome:
    try:
        body = response.json()
    except ValueError:
        return Outcome("not json", seconds, response.status_code, response.text)
    codes = [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
    if response.status_code == 200 and not codes:
        return Outcome("ok", seconds, 200, body)
    if (
        response.status_code == 503
        and codes
        and set(codes) == {"SERVICE_UNAVAILABLE"}
        and response.headers.get("Retry-After", "").isdigit()
    ):
        return Outcome("unavailable", seconds, 503, body)
    return Outcome("other", seconds, response.status_code, body)


async def post(
    http: httpx.AsyncClient,
    url: str,
    query: str,
    variables: Mapping[str, Any],
    token: str,
    *,
    files: Mapping[str, tuple[str, bytes, str]] | None = None,
) -> Outcome:
    """One request, timed; a transport failure (no answer at all) is an outcome too."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        if files:
            import json

            file_map = {name: [f"variables.input.{name}"] for name in files}
            response = await http.post(
                f"{url}/graphql",
                data={
                    "operations": json.dumps({"query": query, "variables": variables}),
                    "map": json.dumps(file_map),
                },
                files=dict(files),
                headers={**headers, "Apollo-Require-Preflight": "true"},
            )
        else:
            response = await http.post(
                f"{url}/graphql", json={"query": query, "variables": variables}, headers=headers
            )
    except httpx.HTTPError as exc:
        return Outcome(f"no answer: {type(exc).__name__}", time.monotonic() - started)
    return classify(response, time.monotonic() - started)


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g} s")
