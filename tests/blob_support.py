"""Looking at what the blob store keeps on disk (models/blobs.py): encrypted objects under
random names, found through their `blob` rows."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from api.config import Settings
from models.blobs import Blob, FileObjectStore


def files_under(root: Path) -> list[Path]:
    """Every file under `root`, temporary ones included."""
    return sorted(Path(d) / f for d, _, names in os.walk(root) for f in names)


async def object_file(settings: Settings, data: bytes) -> Path:
    """The file that holds `data` (encrypted) in the default file store; it must be stored."""
    sha = hashlib.sha256(data).hexdigest()
    row = await Blob.get(sha256=sha, stored=True)
    return FileObjectStore(settings.blob_dir).path(row.name)


async def stored_contents(settings: Settings) -> list[bytes]:
    """The plaintext of every file under the blob directory, sorted; a file that is not a
    stored blob's object (an orphan, a temporary file) stands as b"<orphan NAME>"."""
    store = settings.blob_store()
    found: list[bytes] = []
    rows = {row.name: row for row in await Blob.filter(stored=True)}
    for path in files_under(settings.blob_dir):
        row = rows.get(path.name)
        if row is None:
            found.append(f"<orphan {path.name}>".encode())
        else:
            found.append(await store.read(row.sha256))
    return sorted(found)


async def cli(settings: Settings, *args: str, **env: str) -> tuple[int, str, str]:
    """`espace-sante ARGS` in a process of its own, on the test's database and data
    directory; `env` adds or overrides settings. (exit code, stdout, stderr)"""
    import asyncio
    import sys

    environment = {
        "PATH": os.environ.get("PATH", ""),
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "DATA_DIR": str(settings.data_dir),
        "SECRET_KEY": settings.secret_key,
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), _without_info_logs(err.decode())


def _without_info_logs(text: str) -> str:
    """stderr without the INFO lines of the command's logging (Tortoise's start and end)."""
    info = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO ")
    return "".join(line for line in text.splitlines(keepends=True) if not info.match(line))
