"""The README's third example, `python -m api.examples.live`, against a real server on the demo
world: it prints the message a patient sends (with `--send`) while it listens."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from api.config import VARIABLES
from tests.conftest import free_port
from tests.e2e.live_support import WAIT, ServerProcess, serve_demo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`espace-sante seed-demo`, then `espace-sante serve`, as `./scripts/demo` runs them."""
    with serve_demo(tmp_path_factory.mktemp("live-example"), "demo") as server:
        yield server


def example(*args: str) -> list[str]:
    return [sys.executable, "-m", "api.examples.live", *args]


def example_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    return env


class Lines:
    """The lines a process prints, each waited for with a bound."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def join(self) -> None:
        """Once the process has exited: the reader has seen the end of its output."""
        self._reader.join(WAIT)
        assert not self._reader.is_alive()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next(self, timeout: float = WAIT) -> str | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing printed in {timeout} s") from None


def test_the_live_example_prints_a_message_sent_while_it_listens(
    demo_server: ServerProcess,
) -> None:
    url = demo_server.url
    listener = subprocess.Popen(
        example("--url", url, "--count", "1"),
        env=example_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
    )
    assert listener.stdout is not None
    lines = Lines(listener.stdout)
    try:
        assert lines.next() == "Logged in as Claire Martin: 4 conversations, 2 unread messages."
        assert lines.next() == "Listening for new messages (Ctrl-C to stop)…"
        body = f"Bonjour docteur, ma tension est à 13/8 ({uuid.uuid4().hex[:8]})."

        sent = subprocess.run(
            example("--url", url, "--send", body),
            env=example_env(),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )

        assert sent.returncode == 0, sent.stderr
        assert sent.stdout == f"Jean Petit sent to «Résultats de votre bilan sanguin»: {body}\n"
        printed = lines.next()
        assert printed is not None
        assert re.fullmatch(
            r"\[\d\d:\d\d:\d\d\] Jean Petit · Résultats de votre bilan sanguin: " + re.escape(body),
            printed,
        ), printed
        assert listener.wait(WAIT) == 0  # --count 1: it stops after that message
        assert lines.next() is None
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
        lines.join()
        listener.stdout.close()


def test_the_live_example_says_in_one_line_that_no_server_answers(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    done = subprocess.run(
        example("--url", url),
        env=example_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"error: cannot reach {url}: [Errno 111] Connection refused (is ./scripts/demo running?)\n"
    )
