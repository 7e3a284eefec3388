"""The README's walk-through for partner developers ("For partner developers: the whole flow
with `curl`"), run as it is written: its shell block, with `curl`, `openssl` and `python3`,
against a real server on the demo world (`seed-demo`, then `serve`, as `./scripts/demo`
runs them). Only the address changes. A README whose commands stop working fails here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.live_support import ServerProcess, serve_demo

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("bash", "curl", "openssl", "python3")),
        reason="the README's walk-through needs bash, curl, openssl and python3",
    ),
]

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "### For partner developers: the whole flow with `curl`"
README_API = "API=http://127.0.0.1:8000"


def readme_script() -> str:
    """The section's shell block, exactly as the README shows it."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, "the README lost its section for partner developers"
    after = text.split(SECTION, 1)[1]
    match = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert match is not None, "the section has no ```sh block"
    return match.group(1)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serve_demo(tmp_path_factory.mktemp("partner-curl"), "partner-curl") as server:
        yield server


def _json_lines(output: str) -> list[Any]:
    found = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith('{"'):  # an answer on one line (not the pretty-printed metadata)
            found.append(json.loads(line))
    return found


def test_the_readme_curl_flow_runs_as_written(demo_server: ServerProcess, tmp_path: Path) -> None:
    # given the README's commands, pointed at the running demo server; each curl output is
    # ended by a newline so that its answers can be read one per line
    script = readme_script()
    assert README_API in script
    script = script.replace(README_API, f"API={demo_server.url}")
    prelude = 'set -euo pipefail\ncurl() { command curl "$@"; echo; }\n'

    # when a developer pastes them into a shell
    ran = subprocess.run(
        ["bash", "-c", prelude + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # then every step does what the comments say
    assert ran.returncode == 0, (ran.stdout, ran.stderr, demo_server.output()[-3000:])
    out = ran.stdout
    metadata_text = out.split('"issuer"', 1)
    assert len(metadata_text) == 2, out  # the RFC 8414 document, pretty-printed
    assert '"code_challenge_methods_supported": [\n        "S256"\n    ]' in out
    redirect = re.search(
        r"^http://127\.0\.0\.1:8765/callback\?code=ac\.\S+&state=af0ifjsldkj$", out, re.M
    )
    assert redirect is not None, out
    answers = _json_lines(out)
    patient, booked, agenda, free_text, holder = answers[:5]
    assert patient["data"]["viewer"]["actingFor"]["lastName"] == "Petit", patient
    appointment = booked["data"]["createAppointment"]["appointment"]
    assert appointment["source"] == "PLATFORM", booked
    titles = [
        e["node"]["title"] for e in agenda["data"]["viewer"]["actingFor"]["appointments"]["edges"]
    ]
    assert "Entretien pharmaceutique" in titles, agenda
    assert [e["extensions"]["code"] for e in free_text["errors"]] == ["PERSISTED_QUERY_ID_REQUIRED"]
    me = holder["data"]["viewer"]
    assert [g["app"]["name"] for g in me["appGrants"]] == ["RDV Pharmacie des Lilas (fictif)"]
    assert me["appGrants"][0]["lastUsedAt"] is not None
    events = [e["node"] for e in me["accessLog"]["edges"]]
    assert events[0]["basis"] == "APP", events
    assert events[0]["actor"] == {"name": "RDV Pharmacie des Lilas (fictif)"}
    assert out.rstrip().splitlines()[-1] == "200"  # the app's revocation (RFC 7009)

    # and the revocation ended the grant: the last tokens the script kept are dead
    tokens = json.loads((tmp_path / "tokens.json").read_text())
    after = httpx.post(
        f"{demo_server.url}/graphql",
        json={"documentId": "Patient"},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert after.status_code == 401
    refresh = httpx.post(
        f"{demo_server.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "rdv-lilas-demo",
            "refresh_token": tokens["refresh_token"],
        },
        timeout=10,
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
