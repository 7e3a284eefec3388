"""The README's first screen, run as a new user runs it: `seed-demo` then `serve` (what
`./scripts/demo` runs), the `curl` example pasted into a shell (only the address changed to
the test server's), each `contentUrl` downloaded as the README says, and the live example's
two commands as written, their output as the README shows it."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from api.config import VARIABLES
from models.blobs import sniff_mime
from tests.e2e.live_support import WAIT, ServerProcess, serve_demo

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DEFAULT = "http://127.0.0.1:8000"


def section(start: str, end: str) -> str:
    text = README.read_text(encoding="utf-8")
    at = text.index(start)
    return text[at : text.index(end, at)]


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the fenced blocks of this language ("": none given)."""
    found, body, open_as = [], list[str](), None
    for line in text.splitlines():
        if line.startswith("```"):
            if open_as is None:
                open_as, body = line[3:].strip(), []
                continue
            if open_as == language:
                found.append("\n".join(body) + "\n")
            open_as = None
        elif open_as is not None:
            body.append(line)
    return found


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serve_demo(tmp_path_factory.mktemp("readme-verbatim"), "demo", public_url=True) as server:
        yield server


def shell_env(url: str) -> dict[str, str]:
    """A user's shell: none of the server's settings; the live example pointed at `url`."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", ESPACE_SANTE_URL=url)
    # `.venv/bin/python` as the README writes it, whichever environment runs the suite.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's example needs curl")
def test_the_readme_curl_example_works_pasted_into_a_shell(
    demo_server: ServerProcess, tmp_path: Path
) -> None:
    example = section("**1. Log in and read a dossier with `curl`**", "**2.")
    (commands,) = fenced(example, "sh")
    assert commands.count(DEFAULT) == 2  # the address `./scripts/demo` serves on
    script = commands.replace(DEFAULT, demo_server.url)
    ((download, saved_as),) = re.findall(
        r'`(curl -H "Authorization: Bearer \$TOKEN" -o (\S+)) <contentUrl>`', example
    )

    done = subprocess.run(
        ["bash", "-c", f"set -eo pipefail\n{script}"],
        env=shell_env(demo_server.url),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert "errors" not in body, body
    viewer = body["data"]["viewer"]
    assert (viewer["firstName"], viewer["lastName"]) == ("Jean", "Petit")
    documents = [edge["node"] for edge in viewer["documents"]["edges"]]
    assert len(documents) == viewer["documents"]["totalCount"] == 7  # "Seven documents"
    assert "(PDF, PNG, JPEG, TIFF, RTF, text)" in " ".join(example.split())
    assert {d["mimeType"] for d in documents} == {
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/tiff",
        "application/rtf",
        "text/plain",
    }
    kinds = {edge["node"]["kind"] for edge in viewer["reminders"]["edges"]}
    assert kinds == {"APPOINTMENT", "VACCINATION", "EMERGENCY_ACCESS"}
    assert len(viewer["accessLog"]["edges"]) == 6

    # Each contentUrl, with the README's command and the same token: the file, not a stub.
    for n, document in enumerate(documents):
        target = tmp_path / f"file-{n}"
        login = script.splitlines()[0]  # TOKEN=$(curl ...)
        fetch = download.replace(f"-o {saved_as}", f"-o {target}")
        fetched = subprocess.run(
            ["bash", "-c", f"set -eo pipefail\n{login}\n{fetch} {document['contentUrl']}"],
            env=shell_env(demo_server.url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert fetched.returncode == 0, (document["title"], fetched.stderr)
        data = target.read_bytes()
        assert sniff_mime(data) == document["mimeType"], document["title"]
        assert len(data) > 500, document["title"]


class Lines:
    """The lines a process prints, each waited for with a bound."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next(self) -> str | None:
        try:
            return self._lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"nothing printed in {WAIT} s") from None

    def join(self) -> None:
        self._reader.join(WAIT)


def test_the_readme_live_example_prints_what_the_readme_shows(
    demo_server: ServerProcess,
) -> None:
    example = section("**3. Messages live**", "\nThe two commands")
    (commands,) = fenced(example, "sh")
    (shown,) = fenced(example, "")
    listen, send = (line.split("  #")[0].strip() for line in commands.strip().splitlines())
    assert listen == ".venv/bin/python -m api.examples.live"
    said = re.fullmatch(r'\.venv/bin/python -m api\.examples\.live --send "([^"]+)"', send)
    assert said is not None
    first, second, third = shown.strip().splitlines()
    # The README's commands as written, `.venv/bin/python` being this suite's interpreter.
    python = str(Path(sys.executable))
    body = f"{said[1]} ({uuid.uuid4().hex[:8]})"
    listener = subprocess.Popen(
        [*listen.replace(".venv/bin/python", python).split(), "--count", "1"],
        env=shell_env(demo_server.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
    )
    assert listener.stdout is not None
    lines = Lines(listener.stdout)
    try:
        assert lines.next() == first
        assert lines.next() == second

        sent = subprocess.run(
            [python, "-m", "api.examples.live", "--send", body],
            env=shell_env(demo_server.url),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )

        assert sent.returncode == 0, sent.stderr
        printed = lines.next()
        assert printed is not None
        # The README's third line, its time and text being this message's.
        pattern = re.escape(third).replace(re.escape("[21:14:03]"), r"\[\d\d:\d\d:\d\d\]")
        assert re.fullmatch(pattern.replace(re.escape(said[1]), re.escape(body)), printed), printed
        assert listener.wait(WAIT) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
        lines.join()
        listener.stdout.close()
