"""What a client sends never reaches the server's logs (api/log_privacy.py): a NIR, a name
or a feed's token, sent in a POST's or a GET's variables, in a document that does not
validate, in variables that cannot be coerced, in an input a domain rule refuses, or in a
URL (a GET's query string, the calendar feed's path). The errors are still logged, by code,
path and field; uvicorn's access log still says who asked for what and got which status."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from stdnum.fr import nir as stdnum_nir

from api.extensions.errors import mask_error
from api.log_privacy import install, redact, request_target
from tests.conftest import free_port
from tests.e2e.test_server import STOP_TIMEOUT, command, server_env, wait_until_healthy
from tests.factories import make_operator, make_professional
from tests.graphql import gql

NIR = "1841275123456" + stdnum_nir.calc_check_digits("1841275123456")  # recognisable
BAD_KEY_NIR = "284057505612300"  # its key should be 87: refused by the enrolment rules
NAME = "Zephyrine-Quaresma"  # a name no log line may hold
FEED_TOKEN = "feedtokenSECRETxq7Wm2Lr9Tz"  # the credential of a private calendar feed

SECRETS = (NIR, BAD_KEY_NIR, NAME, FEED_TOKEN)

BY_NIR = "query ByNir($n: String!, $d: Date!) { patientByNir(nir: $n, birthDate: $d) { id } }"
SEARCH = "query Search($s: String!, $f: Int) { professionals(search: $s, first: $f) { id } }"
ENROL = "mutation Enrol($i: EnrollPatientInput!) { enrollPatient(input: $i) { patient { id } } }"


def rendered(record: logging.LogRecord) -> str:
    """Everything a handler could write of `record`: its text, traceback, template, args."""
    text = logging.Formatter("%(name)s %(levelname)s %(message)s").format(record)
    return f"{text}\n{record.msg!s}\n{record.args!r}"


def assert_no_secret(records: list[logging.LogRecord]) -> None:
    for record in records:
        text = rendered(record)
        for secret in SECRETS:
            assert secret not in text, f"{secret} logged by {record.name}: {text}"


def error_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.name == "api.extensions.errors"]


def enrolment(nir: str) -> dict[str, Any]:
    return {
        "nir": nir,
        "firstName": NAME,
        "lastName": NAME,
        "birthDate": "1984-05-02",
        "sex": "FEMALE",
        "channel": "POST",
        "postalAddress": {"line1": "12 rue des Lilas", "postalCode": "69003", "city": "Lyon"},
    }


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO)  # the level `espace-sante serve` logs at
    client_log = logging.getLogger("httpx")  # the test client's own request lines
    level = client_log.level
    client_log.setLevel(logging.WARNING)
    try:
        yield caplog
    finally:
        client_log.setLevel(level)


async def test_variables_that_cannot_be_coerced_are_logged_without_their_values(
    client: httpx.AsyncClient, logs: pytest.LogCaptureFixture
) -> None:
    # a NIR sent as a number (POST), a NIR as the page size (GET), a name as a date (POST)
    posted = await gql(client, BY_NIR, {"n": int(NIR), "d": "1984-05-02"})
    got = await client.get(
        "/graphql",
        params={"query": SEARCH, "variables": json.dumps({"s": NAME, "f": NIR})},
    )
    dated = await gql(client, BY_NIR, {"n": NIR, "d": NAME})

    assert posted.codes == dated.codes == ["BAD_USER_INPUT"]
    assert got.status_code == 422 and got.json()["errors"][0]["extensions"]["code"] == (
        "BAD_USER_INPUT"
    )
    assert_no_secret(logs.records)
    lines = error_lines(logs.records)
    assert len(lines) == 3, lines
    assert "operation=ByNir" in lines[0] and "BAD_USER_INPUT at - (field n)" in lines[0]
    assert "operation=Search" in lines[1] and "(field f)" in lines[1]
    assert "(field d)" in lines[2]


async def test_a_document_that_does_not_validate_or_parse_is_logged_without_its_literals(
    client: httpx.AsyncClient, logs: pytest.LogCaptureFixture
) -> None:
    result = await gql(
        client, f'query Literal {{ patientByNir(nir: {NIR}, birthDate: "{NAME}") {{ id }} }}'
    )

    unparsable = await gql(client, f"query Broken {{ patientByNir {NIR} }}")

    assert set(result.codes) == {"GRAPHQL_VALIDATION_FAILED"}
    assert unparsable.codes == ["GRAPHQL_PARSE_FAILED"]
    assert_no_secret(logs.records)
    [invalid, broken] = error_lines(logs.records)
    assert "operation=Literal" in invalid and "GRAPHQL_VALIDATION_FAILED at -;" in invalid
    assert broken.endswith("operation=-): GRAPHQL_PARSE_FAILED at -"), broken


async def test_an_input_a_domain_rule_refuses_is_logged_without_its_values(
    client: httpx.AsyncClient, logs: pytest.LogCaptureFixture
) -> None:
    operator = await make_operator()
    doctor = await make_professional(NAME)
    logs.clear()

    refused = await gql(client, ENROL, {"i": enrolment(BAD_KEY_NIR)}, token=operator.token)
    unknown = await gql(client, BY_NIR, {"n": NIR, "d": "1984-05-02"}, token=doctor.token)
    anonymous = await gql(client, BY_NIR, {"n": NIR, "d": "1984-05-02"})

    assert refused.codes == ["BAD_USER_INPUT"]
    assert unknown.codes == ["NOT_FOUND"]
    assert anonymous.codes == ["UNAUTHENTICATED"]
    assert_no_secret(logs.records)
    lines = error_lines(logs.records)
    assert len(lines) == 3, lines
    assert "operation=Enrol" in lines[0] and "BAD_USER_INPUT at enrollPatient" in lines[0]
    assert "NOT_FOUND at patientByNir" in lines[1]
    assert "UNAUTHENTICATED at patientByNir" in lines[2]


def test_an_internal_errors_traceback_keeps_no_identifier(
    logs: pytest.LogCaptureFixture,
) -> None:
    """An unexpected exception whose text holds a NIR (as a driver's 'Key (x)=(…)' does):
    logged with its traceback and request id, the digits gone."""
    from graphql import GraphQLError

    install()
    try:
        raise ValueError(f"duplicate key value: Key (nir)=({NIR})")
    except ValueError as exc:
        error = GraphQLError(f"duplicate key value: Key (nir)=({NIR})", original_error=exc)
    masked = mask_error(error, "rid-123")

    assert masked.extensions == {"code": "INTERNAL_SERVER_ERROR", "requestId": "rid-123"}
    [record] = [r for r in logs.records if r.levelno == logging.ERROR]
    assert_no_secret([record])
    text = rendered(record)
    assert "rid-123" in text and "Traceback" in text and "ValueError" in text, text


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/graphql?query=%7Bx%7D&variables=%7B%22n%22%3A1%7D", "/graphql?…"),
        ("/graphql", "/graphql"),
        (f"/calendar/{FEED_TOKEN}.ics", "/calendar/{token}.ics"),
        (f"/calendar/{FEED_TOKEN}.ics?x=1", "/calendar/{token}.ics?…"),
        (f"/patients/{NIR}", "/patients/…"),
        ("/documents/RG9jdW1lbnQ6MTI/content", "/documents/RG9jdW1lbnQ6MTI/content"),
    ],
)
def test_request_targets_as_logged(target: str, logged: str) -> None:
    assert request_target(target) == logged


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        # a row's UUID names a row: kept whole, even when its last group is all digits
        (
            "the NIR of patient c6fc13b7-aaf4-4e6d-8a9a-912232505248 does not decrypt",
            "the NIR of patient c6fc13b7-aaf4-4e6d-8a9a-912232505248 does not decrypt",
        ),
        ("row 12345678-1234-1234-1234-123456789012.", "row 12345678-1234-1234-1234-123456789012."),
        # a NIR beside a UUID still goes, spaced, dashed or not
        (
            f"c6fc13b7-aaf4-4e6d-8a9a-912232505248 ({NIR})",
            "c6fc13b7-aaf4-4e6d-8a9a-912232505248 (…)",
        ),
        ("nir=1 84 05 75 123 456 78", "nir=…"),
        ("tel 0612-3456-7890", "tel …"),
        # not a UUID: a dash before, or a longer last group, does not protect digits
        ("x-00000000-0000-0000-0000-000000000000", "x-…"),
        ("c6fc13b7-aaf4-4e6d-8a9a-9122325052481", "c6fc13b7-aaf4-4e6d-8a9a-…"),
    ],
)
def test_redact_keeps_row_ids_and_drops_identifiers(text: str, logged: str) -> None:
    assert redact(text) == logged


# --- the real server: `espace-sante serve`, its access log and its error log -------------


async def _ask_a_real_server(url: str) -> dict[str, int]:
    statuses: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
        posted = await http.post(
            "/graphql", json={"query": BY_NIR, "variables": {"n": int(NIR), "d": NAME}}
        )
        statuses["post"] = posted.status_code
        got = await http.get(
            "/graphql",
            params={"query": SEARCH, "variables": json.dumps({"s": NAME, "f": NIR})},
        )
        statuses["get"] = got.status_code
        post_only = await http.get(
            "/graphql",
            params={"query": BY_NIR, "variables": json.dumps({"n": NIR, "d": "1984-05-02"})},
        )
        statuses["post_only"] = post_only.status_code
        feed = await http.get(f"/calendar/{FEED_TOKEN}.ics")
        statuses["feed"] = feed.status_code
    ws_url = url.replace("http://", "ws://") + f"/graphql?nir={NIR}&name={NAME}"
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        await asyncio.wait_for(socket.recv(), 10)
    return statuses


def test_a_real_servers_logs_hold_no_client_value(tmp_path: Path) -> None:
    env = server_env(tmp_path, None)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command("serve", "--host", "127.0.0.1", "--port", str(port)),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log)
        statuses = asyncio.run(_ask_a_real_server(url))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    text = log.read_text()

    assert statuses == {"post": 422, "get": 422, "post_only": 405, "feed": 404}, text
    assert f"Uvicorn running on http://127.0.0.1:{port}" in text, text  # untouched
    for secret in SECRETS:
        assert secret not in text, f"{secret} in the server's output:\n{text}"
    # who asked for what, and what they got, is still there
    assert '"POST /graphql HTTP/1.1" 422' in text, text
    assert '"GET /graphql?… HTTP/1.1" 422' in text, text
    assert '"GET /graphql?… HTTP/1.1" 405' in text, text
    assert '"GET /calendar/{token}.ics HTTP/1.1" 404' in text, text
    assert '"WebSocket /graphql?…" [accepted]' in text, text
    # and so are the GraphQL errors, by operation, code and field
    assert "operation=ByNir): BAD_USER_INPUT at - (field n)" in text, text
    assert "operation=Search): BAD_USER_INPUT at - (field f)" in text, text
