"""Fuzzing of the live schema (review issue 9): schemathesis's GraphQL support sends
generated queries and mutations, every one of the schema, to a real `espace-sante serve`,
anonymously and as an operator, a professional and a patient; no answer may be a 5xx, an
INTERNAL_SERVER_ERROR or an error without a code.

The server runs on a fresh database holding a small world made through the API (demo
accounts, an enrolled space with its activation code, consents, documents, a conversation
with an attachment, an appointment and its reminders...). The fuzzer gets that world's
values as dictionaries: real global ids for every ID argument (by its name), NIRs, the
activation code, e-mails, passwords, RPPS and FINESS numbers, page cursors, birth dates; so
it gets past the first argument check and into the resolvers. Each argument still gets a
generated value part of the time.

Bounded for CI: FUZZ_EXAMPLES (10) examples per operation and role, a third of them
anonymously, fewer for the operations that hash a password; derandomized, so every run sends
the same cases. About 1,650 cases for the four roles, ~60 s of CPU on this 2-core machine
(fuzzer and server together), plus ~20 s to make the world. To fuzz longer locally, or
other cases than CI's:

    FUZZ_EXAMPLES=300 FUZZ_SEED=1 .venv/bin/pytest tests/e2e/test_fuzz.py -s

`-s` prints, per role, the cases sent, the operations that answered data, the error codes
met and the operations that ended the session (each followed by a spare one).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.config import SchemathesisConfig
from schemathesis.graphql import nodes
from schemathesis.schemas import APIOperation
from stdnum import luhn
from stdnum.fr import nir

from models.demo import DEMO_PASSWORD
from tests.conftest import PG_URL, free_port
from tests.e2e.live_support import ServerProcess, command, server_env
from tests.e2e.test_server import _pg
from tests.lifecycle_support import ACTIVATION_CODE, ENROLL

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))  # per operation and role
SEED = int(os.environ.get("FUZZ_SEED", "0"))
# Anonymous calls mostly stop at the first permission check: fewer of them teach as much.
ANONYMOUS_EXAMPLES = max(1, EXAMPLES // 3)
# The share of arguments that get a value of the world rather than a generated one.
WORLD_VALUE_PROBABILITY = 0.8
REQUEST_TIMEOUT = 30.0
# Text that random generation rarely makes and databases treat specially: a NUL (which
# PostgreSQL refuses in text), more than any column holds, blanks, wide characters.
AWKWARD_STRINGS = [
    "",
    " ",
    "\x00",
    "nul\x00inside",
    "x" * 300,
    "9" * 5000,
    "\u00e9\u0301" * 80,
    "\U0001f600" * 120,
    "\u202egnp.exe",
    "' OR '1'='1",
    "%_\\",
]
AWKWARD_PROBABILITY = 0.2
# And these join the values of every named String (`email`, `nir`, `after`...).
AWKWARD_NAMED = ["nul\x00inside", "x" * 300]
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|[A-Z]+: ")  # where a log record starts
OUR_FRAME = re.compile(r'File ".*/(api|models|resolvers|subscriptions)/')
# Operations that hash a password (argon2, ~0.2 s each at the server's real cost) get
# this share of the examples.
COSTLY = {"Mutation.login": 3, "Mutation.closeSpace": 2, "Mutation.activateSpace": 2}

ROLES = ("anonymous", "operator", "professional", "patient")
VIEWER_TYPES = {
    "anonymous": None,
    "operator": "Operator",
    "professional": "Professional",
    "patient": "Patient",
}
# The fuzzing must get past the first checks: at least this many operations answer data
# without error (a broken session or world would leave only refusals, and a green test).
MIN_REACHED = {"anonymous": 2, "operator": 5, "professional": 10, "patient": 12}
# These close the caller's space (closing ends its sessions): each role runs them last.
TERMINAL = ("Mutation.closeSpace", "Mutation.requestDeletion")
# An operation that ends the session (logout...) is followed by one of these.
SPARE_SESSIONS = 3

DEMO = "demo.espace-sante.localhost"
EMAILS = {
    "operator": f"operateur@{DEMO}",
    "professional": f"dr.martin@{DEMO}",
    "patient": f"camille@{DEMO}",
    "stranger": f"jean@{DEMO}",
}
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
NEW_PASSWORD = "violet-harbour-lantern-93"

# The type of the seeded objects an ID argument (or input field) of this name gets, where
# its name does not say it (`patientId`: Patient); any other name gets any id.
ID_ARGUMENTS = {
    "representativeId": "Patient",
    "dependentId": "Patient",
}


# --- the server and its world -----------------------------------------------------------


@dataclass
class World:
    url: str
    server: ServerProcess
    tokens: dict[str, str]
    spares: dict[str, list[str]]
    ids: dict[str, list[str]] = field(default_factory=dict)  # type name -> global ids
    strings: dict[str, list[str]] = field(default_factory=dict)  # argument name -> values
    dates: list[str] = field(default_factory=list)

    def add_id(self, type_name: str, global_id: str | None) -> None:
        if global_id and global_id not in self.ids.setdefault(type_name, []):
            self.ids[type_name].append(global_id)

    def add_string(self, name: str, *values: str | None) -> None:
        for value in values:
            if value and value not in self.strings.setdefault(name, []):
                self.strings[name].append(value)


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("fuzz")
    pg_name = None
    server = None
    try:
        if PG_URL:
            pg_name = f"espace_sante_fuzz_{uuid.uuid4().hex[:10]}"
            asyncio.run(_pg(f'CREATE DATABASE "{pg_name}"'))
            database_url = f"{PG_URL.rpartition('/')[0]}/{pg_name}"
        else:
            # The session's migrated template (conftest): seed-demo then only checks it.
            path = folder / "fuzz.sqlite3"
            shutil.copyfile(request.getfixturevalue("db_template"), path)
            database_url = f"sqlite://{path}"
        seeded = subprocess.run(
            command("seed-demo"),
            env=server_env(folder, database_url, "memory://"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert seeded.returncode == 0, seeded.stdout + seeded.stderr
        server = ServerProcess("fuzz", folder, database_url, "memory://", free_port())
        server.wait_healthy()
        with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as http:
            yield build_world(http, server, folder)
    finally:
        if server is not None:
            server.stop()
        if pg_name is not None:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


def call(
    http: httpx.Client,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
    files: dict[str, tuple[str, bytes, str]] | None = None,
) -> Any:
    """The data of one operation that must succeed; with `files`, a multipart request whose
    files fill `variables.input.<name>` (a list when the name ends with `.0`, `.1`...)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if files:
        response = http.post(
            "/graphql",
            data={
                "operations": json.dumps({"query": query, "variables": variables}),
                "map": json.dumps({str(i): [f"variables.{p}"] for i, p in enumerate(files)}),
            },
            files={str(i): file for i, file in enumerate(files.values())},
            headers={**headers, "Apollo-Require-Preflight": "true"},
        )
    else:
        response = http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


def login(http: httpx.Client, email: str) -> str:
    data = call(
        http,
        "mutation($input: LoginInput!) { login(input: $input) { token } }",
        {"input": {"email": email, "password": DEMO_PASSWORD}},
    )
    token: str = data["login"]["token"]
    return token


def fresh_nir(serial: int, birth: date = date(1990, 4, 1)) -> str:
    body = f"2{birth:%y}{birth:%m}75056{serial:03d}"
    return body + nir.calc_check_digits(body)


def activation_code(outbox: Path, address: str) -> str:
    """The code of the last mail to `address` that the server wrote to DATA_DIR/outbox
    (no SMTP_URL in development)."""
    for path in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True):
        message = message_from_bytes(path.read_bytes(), policy=default_policy)
        assert isinstance(message, EmailMessage)
        if address in str(message["To"]):
            found = ACTIVATION_CODE.search(str(message.get_content()))
            assert found, "no activation code in the mail"
            return found.group(1)
    raise AssertionError(f"no mail to {address} in {outbox}")


VIEWER = """{ viewer { __typename
  ... on Patient { id nir birthDate dependents { id nir birthDate } }
  ... on Professional { id rpps }
  ... on Operator { id } } }"""
GRANT = (
    """mutation($input: GrantConsentInput!) { grantConsent(input: $input) { consent { id } } }"""
)
ADD_DOCUMENT = """mutation($input: AddDocumentInput!) {
  addDocument(input: $input) { document { id } } }"""
VACCINATION = """mutation($input: RecordVaccinationInput!) {
  recordVaccination(input: $input) { vaccination { id } } }"""
SCREENING = """mutation($input: RecordScreeningInput!) {
  recordScreening(input: $input) { screening { id } } }"""
PROFILE = """mutation($input: UpdateHealthProfileInput!) {
  updateHealthProfile(input: $input) { healthProfile { allergies } } }"""
APPOINTMENT = """mutation($input: CreateAppointmentInput!) {
  createAppointment(input: $input) { appointment { id } } }"""
START = """mutation($input: StartConversationInput!) { startConversation(input: $input) {
  conversation { id } message { id attachments { id } } } }"""
SEND = """mutation($input: SendMessageInput!) { sendMessage(input: $input) { message { id } } }"""
SPACE = """query($id: ID!) { patient(id: $id) {
  documents(first: 1) { edges { cursor } }
  accessLog(first: 5) { edges { cursor node { id } } }
  conversations(first: 1) { edges { cursor node { messages(first: 1) { edges { cursor } } } } }
  appointments(first: 1) { edges { cursor } }
  reminders(first: 5) { edges { cursor node { id } } }
  consents { id }
} }"""
DASHBOARD = """query($id: ID!) { node(id: $id) { ... on Professional {
  patients(first: 1) { edges { cursor } } } } }"""


def build_world(http: httpx.Client, server: ServerProcess, folder: Path) -> World:
    """The demo accounts, and through the API what the fuzzer should find."""
    tokens = {role: login(http, email) for role, email in EMAILS.items()}
    # Sessions to go on with when one is ended by what is fuzzed (logout...).
    spares = {
        role: [login(http, EMAILS[role]) for _ in range(SPARE_SESSIONS)] for role in ROLES[1:]
    }
    world = World(url=server.url, server=server, tokens=tokens, spares=spares)
    viewers = {role: call(http, VIEWER, token=token)["viewer"] for role, token in tokens.items()}
    patient, pro = viewers["patient"], viewers["professional"]
    for role, viewer in viewers.items():
        world.add_id(viewer["__typename"], viewer["id"])
        if viewer["__typename"] == "Patient":
            world.add_string("nir", viewer["nir"])
            world.dates.append(viewer["birthDate"])
            for child in viewer["dependents"]:
                world.add_id("Patient", child["id"])
                world.add_string("nir", child["nir"])
                world.dates.append(child["birthDate"])
        world.add_string("email", EMAILS[role])
    child = patient["dependents"][0]["id"]
    world.add_string("rpps", pro["rpps"], "10000000042")
    world.add_string("search", "Martin", "claire mar", pro["rpps"])

    # A space enrolled by the operator, pending, with its activation code.
    enrolled_nir, birth = fresh_nir(1), date(1990, 4, 1)
    enrolled = call(
        http,
        ENROLL,
        {
            "input": {
                "nir": enrolled_nir,
                "firstName": "Inès",
                "lastName": "Garnier",
                "birthDate": birth.isoformat(),
                "sex": "FEMALE",
                "channel": "EMAIL",
                "email": "ines.garnier@example.org",
            }
        },
        token=tokens["operator"],
    )["enrollPatient"]["patient"]
    world.add_id("Patient", enrolled["id"])
    world.add_string("nir", enrolled_nir, fresh_nir(2), fresh_nir(3))
    world.dates.append(birth.isoformat())
    world.add_string("code", activation_code(folder / "outbox", "ines.garnier@example.org"))
    world.add_string("email", "ines.garnier@example.org", "nouvelle.adresse@example.org")
    world.add_string("password", DEMO_PASSWORD, NEW_PASSWORD)
    world.add_string(
        "finess", "750100018", "2A0000018", "75010001" + luhn.calc_check_digit("75010001")
    )
    world.add_string("postalCode", "75001", "2A004")

    # The patient lets the professional read and write her dossier and her son's.
    for patient_id in (patient["id"], child):
        grant = {"professionalId": pro["id"], "access": "READ_WRITE", "patientId": patient_id}
        consent = call(http, GRANT, {"input": grant}, token=tokens["patient"])
        world.add_id("Consent", consent["grantConsent"]["consent"]["id"])

    # Documents, by the patient and by the professional; a vaccination, a screening, a profile.
    for token, patient_id, title in (
        (tokens["patient"], patient["id"], "Ordonnance"),
        (tokens["professional"], patient["id"], "Compte rendu"),
        (tokens["patient"], child, "Carnet de santé"),
    ):
        document = {"title": title, "category": "OTHER", "patientId": patient_id, "file": None}
        added = call(
            http,
            ADD_DOCUMENT,
            {"input": document},
            token=token,
            files={"input.file": ("document.pdf", PDF, "application/pdf")},
        )
        world.add_id("Document", added["addDocument"]["document"]["id"])
    vaccination = {"vaccine": "DTP", "date": "2024-01-15", "patientId": patient["id"]}
    done = call(http, VACCINATION, {"input": vaccination}, token=tokens["professional"])
    world.add_id("Vaccination", done["recordVaccination"]["vaccination"]["id"])
    screening = {"kind": "COLORECTAL", "date": "2024-02-01", "patientId": patient["id"]}
    done = call(http, SCREENING, {"input": screening}, token=tokens["patient"])
    world.add_id("Screening", done["recordScreening"]["screening"]["id"])
    profile = {"allergies": ["pénicilline"], "trustedPerson": {"name": "Paul Durand"}}
    call(http, PROFILE, {"input": profile}, token=tokens["patient"])

    # An appointment (and its reminders) with the professional, in three days.
    starts = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    appointment = {
        "startsAt": starts.isoformat(),
        "endsAt": (starts + timedelta(minutes=30)).isoformat(),
        "title": "Consultation",
        "professionalId": pro["id"],
    }
    booked = call(http, APPOINTMENT, {"input": appointment}, token=tokens["patient"])
    world.add_id("Appointment", booked["createAppointment"]["appointment"]["id"])

    # A conversation started by the professional with an attachment, and an answer.
    started = call(
        http,
        START,
        {
            "input": {
                "patientId": patient["id"],
                "subject": "Résultats",
                "body": "Bonjour, voici vos résultats.",
                "attachments": [None],
            }
        },
        token=tokens["professional"],
        files={"input.attachments.0": ("resultats.pdf", PDF, "application/pdf")},
    )["startConversation"]
    conversation = started["conversation"]["id"]
    world.add_id("Conversation", conversation)
    world.add_id("Message", started["message"]["id"])
    world.add_id("Attachment", started["message"]["attachments"][0]["id"])
    answer = {"conversationId": conversation, "body": "Merci docteur."}
    world.add_id(
        "Message",
        call(http, SEND, {"input": answer}, token=tokens["patient"])["sendMessage"]["message"][
            "id"
        ],
    )

    # Access events, reminders, and one cursor of every list.
    space = call(http, SPACE, {"id": patient["id"]}, token=tokens["patient"])["patient"]
    for event in space["accessLog"]["edges"]:
        world.add_id("AccessEvent", event["node"]["id"])
    for reminder in space["reminders"]["edges"]:
        world.add_id("Reminder", reminder["node"]["id"])
    for consent in space["consents"]:
        world.add_id("Consent", consent["id"])
    cursors = [
        edge["cursor"]
        for key in ("documents", "accessLog", "conversations", "appointments", "reminders")
        for edge in space[key]["edges"][:1]
    ]
    for edge in space["conversations"]["edges"]:
        cursors += [e["cursor"] for e in edge["node"]["messages"]["edges"]]
    dashboard = call(http, DASHBOARD, {"id": pro["id"]}, token=tokens["professional"])
    cursors += [e["cursor"] for e in dashboard["node"]["patients"]["edges"]]
    world.add_string("after", *cursors, *made_up_cursors())
    world.dates.append(date.today().isoformat())
    return world


def made_up_cursors() -> list[str]:
    """Cursors of the API's shape (base64url of the JSON sort key) holding what no row has:
    a name longer than its column or with a NUL, moments without an offset or beyond the
    calendar in UTC, a malformed id."""
    someone = str(uuid.UUID(int=1))
    keys: list[list[str]] = [
        ["x" * 300, "Alice", someone],
        ["Martin\x00", "Alice", someone],
        ["2024-01-01T00:00:00", someone],
        ["9999-12-31T23:59:59-23:59", someone],
        ["2024-01-01", "0001-01-01T00:00:00+14:00", someone],
        ["2024-01-01T00:00:00+00:00", "not-an-id"],
    ]
    return [base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=") for key in keys]


# --- the fuzzer -------------------------------------------------------------------------


def register_scalars(world: World) -> None:
    """Strategies for the custom scalars: dates of the world or anything, moments soon or
    anywhen, and for uploads a string (a JSON body cannot carry a file)."""
    dates = st.one_of(st.sampled_from(world.dates), st.dates().map(str))
    schemathesis.graphql.scalar("Date", dates.map(nodes.String))
    moments = st.datetimes(timezones=st.just(UTC) | st.none()).map(datetime.isoformat)
    soon = st.integers(min_value=-30 * 24, max_value=60 * 24).map(
        lambda hours: (datetime.now(UTC) + timedelta(hours=hours)).isoformat()
    )
    schemathesis.graphql.scalar("DateTime", st.one_of(soon, moments).map(nodes.String))
    schemathesis.graphql.scalar("Upload", st.text(max_size=8).map(nodes.String))


def dictionary_config(world: World, client_schema: graphql.GraphQLSchema) -> SchemathesisConfig:
    """Dictionaries of the world's values, each bound to the arguments and input fields (at
    any depth, in any operation) it suits: an ID to the ids of the type its name says
    (`patientId`: patients; a name that says none: every id), a String to the values of its
    name (`nir`, `email`, `after`...). Any other String or ID gets awkward text now and then."""
    every_id = [i for ids in world.ids.values() for i in ids]
    dictionaries: dict[str, dict[str, list[str]]] = {
        f"{type_name}Ids": {"values": ids} for type_name, ids in world.ids.items() if ids
    }
    dictionaries["anyIds"] = {"values": every_id}
    for name, values in world.strings.items():
        dictionaries[name] = {"values": [*values, *AWKWARD_NAMED]}
    dictionaries["awkward"] = {"values": AWKWARD_STRINGS}
    parameters = {}
    for path, name, scalar in argument_paths(client_schema):
        if scalar == "ID":
            type_name = ID_ARGUMENTS.get(name) or name[:1].upper() + name[1:].removesuffix("Id")
            dictionary = f"{type_name}Ids" if f"{type_name}Ids" in dictionaries else "anyIds"
        elif name in world.strings:
            dictionary = name
        else:
            continue
        parameters[f"*.*.{path}"] = {
            "dictionary": dictionary,
            "probability": WORLD_VALUE_PROBABILITY,
        }
    # A field named after a type takes an id of that type (`patient(id:)`: patients).
    for kind in client_schema.type_map.values():
        if isinstance(kind, graphql.GraphQLObjectType) and not kind.name.startswith("__"):
            for field_name, field_ in kind.fields.items():
                ids = f"{field_name[:1].upper()}{field_name[1:]}Ids"
                if "id" in field_.args and ids in dictionaries:
                    parameters[f"{kind.name}.{field_name}.id"] = {
                        "dictionary": ids,
                        "probability": WORLD_VALUE_PROBABILITY,
                    }
    return SchemathesisConfig.from_dict(
        {
            "dictionaries": dictionaries,
            "parameters": parameters,
            "generation": {
                "dictionaries": {
                    "string": {"dictionary": "awkward", "probability": AWKWARD_PROBABILITY}
                }
            },
        }
    )


def argument_paths(client_schema: graphql.GraphQLSchema) -> Iterator[tuple[str, str, str]]:
    """(binding path, name, scalar) of every String or ID argument or input field."""
    seen: set[str] = set()

    def walk(
        kind: graphql.GraphQLInputType, path: str, name: str, depth: int
    ) -> Iterator[tuple[str, str, str]]:
        kind = graphql.get_nullable_type(kind)
        if isinstance(kind, graphql.GraphQLList):
            yield from walk(kind.of_type, f"{path}[*]", name, depth)
        elif isinstance(kind, graphql.GraphQLInputObjectType) and depth < 4:
            for field_name, field_ in kind.fields.items():
                yield from walk(field_.type, f"{path}.{field_name}", field_name, depth + 1)
        elif isinstance(kind, graphql.GraphQLScalarType) and kind.name in ("String", "ID"):
            yield path, name, kind.name

    for kind in client_schema.type_map.values():
        if not isinstance(kind, graphql.GraphQLObjectType) or kind.name.startswith("__"):
            continue
        for field_ in kind.fields.values():
            for arg_name, arg in field_.args.items():
                for found in walk(arg.type, arg_name, arg_name, 0):
                    if found[0] not in seen:
                        seen.add(found[0])
                        yield found


@dataclass
class Defect:
    role: str
    operation: str
    problems: list[str]
    query: str
    errors: list[dict[str, Any]]
    traceback: str

    def key(self) -> tuple[str, str]:
        """One report per operation and place of the error in the answer."""
        return self.operation, json.dumps([e.get("path") for e in self.errors])

    def __str__(self) -> str:
        errors = json.dumps(self.errors, ensure_ascii=False)[:1500]
        return (
            f"--- {self.operation} as {self.role}: {'; '.join(self.problems)}\n{self.query}\n"
            f"errors: {errors}\n{self.traceback}"
        )


@dataclass
class Outcome:
    cases: Counter[str] = field(default_factory=Counter)  # operation -> cases sent
    answered: Counter[str] = field(default_factory=Counter)  # operation -> answers without error
    codes: Counter[str] = field(default_factory=Counter)
    codes_by_operation: dict[str, Counter[str]] = field(default_factory=dict)
    defects: list[Defect] = field(default_factory=list)
    sessions_ended_by: list[str] = field(default_factory=list)

    def table(self) -> str:
        """Per operation: cases, answers without error, and the error codes met."""
        return "\n".join(
            f"  {label}: {count} cases, {self.answered[label]} answered, "
            f"{dict(self.codes_by_operation.get(label, Counter()).most_common())}"
            for label, count in self.cases.items()
        )


def defects_of(response: requests.Response) -> tuple[bool, list[dict[str, Any]], list[str]]:
    """(answered without error, the errors, what is wrong with the answer): a 5xx, a body
    that is not a GraphQL answer, an error coded INTERNAL_SERVER_ERROR or not coded."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return False, [], [f"HTTP {response.status_code}, not a JSON object: {response.text[:300]}"]
    errors = body.get("errors") or []
    problems = [f"HTTP {response.status_code}"] if response.status_code >= 500 else []
    for error in errors:
        code = (error.get("extensions") or {}).get("code")
        if code in (None, "INTERNAL_SERVER_ERROR"):
            problems.append(f"code {code}")
    return not errors and body.get("data") is not None, errors, problems


def traceback_of(server: ServerProcess, errors: list[dict[str, Any]]) -> str:
    """What the server logged for these errors' request ids (MaskInternalErrors logs the
    traceback): the exceptions, and the frames of our own code."""
    ids = {(e.get("extensions") or {}).get("requestId") for e in errors} - {None}
    lines = server.output().splitlines()
    found: list[str] = []
    for request_id in ids:
        start = next((i for i, line in enumerate(lines) if request_id in line), None)
        if start is None:
            continue
        found.append(lines[start])
        keep_next = False
        for line in lines[start + 1 :]:
            if LOG_LINE.match(line):
                break
            ours = OUR_FRAME.search(line) is not None
            if ours or keep_next or not line.startswith(" "):
                found.append(line)
            keep_next = ours
    return "\n".join(found)


def fuzz(
    operation: APIOperation,
    role: str,
    token: str | None,
    examples: int,
    session: requests.Session,
    world: World,
    outcome: Outcome,
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    @settings(
        max_examples=examples,
        derandomize=not SEED,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # every case is checked, not raised: nothing to shrink
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy())
    def send(case: Any) -> None:
        response = case.call(session=session, headers=headers, timeout=REQUEST_TIMEOUT)
        answered, errors, problems = defects_of(response)
        outcome.cases[operation.label] += 1
        outcome.answered[operation.label] += answered
        codes = [str((e.get("extensions") or {}).get("code")) for e in errors]
        outcome.codes.update(codes)
        outcome.codes_by_operation.setdefault(operation.label, Counter()).update(codes)
        if problems:
            outcome.defects.append(
                Defect(
                    role,
                    operation.label,
                    problems,
                    str(case.body),
                    errors,
                    traceback_of(world.server, errors),
                )
            )

    (seed(SEED)(send) if SEED else send)()


@pytest.fixture(scope="module")
def hypothesis_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hypothesis caches constants of our modules under its home (.hypothesis in the
    current directory by default): in a temporary one, the work tree stays as it was."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture(scope="module")
def operations(world: World, hypothesis_home: None) -> list[APIOperation]:
    """Every query and mutation of the live schema (introspected), with the world's values."""
    register_scalars(world)
    loaded = schemathesis.graphql.from_url(f"{world.url}/graphql")
    config = dictionary_config(world, loaded.client_schema)
    schema = schemathesis.graphql.from_url(f"{world.url}/graphql", config=config)
    found = [result.ok() for result in schema.get_all_operations()]
    terminal = [o for o in found if o.label in TERMINAL]
    return [o for o in found if o.label not in TERMINAL] + sorted(
        terminal, key=lambda o: TERMINAL.index(o.label)
    )


@pytest.mark.parametrize("role", ROLES)
def test_no_generated_operation_gets_an_internal_error(
    role: str, world: World, operations: list[APIOperation]
) -> None:
    # given the live schema, the world's values, and the role's session (or none)
    token = None if role == "anonymous" else world.tokens[role]
    spares = list(world.spares.get(role, []))
    examples = ANONYMOUS_EXAMPLES if role == "anonymous" else EXAMPLES
    outcome = Outcome()
    started, client_cpu, server_cpu = time.monotonic(), time.process_time(), cpu_of(world)

    # when every query and mutation is sent generated arguments and selections
    with requests.Session() as session:
        assert viewer_type(session, world, token) == VIEWER_TYPES[role]
        for operation in operations:
            share = max(1, examples // COSTLY.get(operation.label, 1))
            fuzz(operation, role, token, share, session, world, outcome)
            if token and viewer_type(session, world, token) != VIEWER_TYPES[role]:
                outcome.sessions_ended_by.append(operation.label)
                token = live_session(session, world, role, spares) or token

    # then no answer is a server error, and the fuzzer got past the argument checks
    elapsed = time.monotonic() - started
    client_cpu, server_cpu = time.process_time() - client_cpu, cpu_of(world) - server_cpu
    reached = [o.label for o in operations if outcome.answered[o.label]]
    print(
        f"\n{role}: {outcome.cases.total()} cases in {elapsed:.1f} s (CPU: fuzzer "
        f"{client_cpu:.1f} s, server {server_cpu:.1f} s), "
        f"{outcome.answered.total()} answered without error, {len(reached)} operations "
        f"reached; codes {dict(outcome.codes.most_common())}; sessions ended by "
        f"{outcome.sessions_ended_by}\n{outcome.table()}"
    )
    unique = {defect.key(): defect for defect in outcome.defects}
    assert not unique, f"{len(outcome.defects)} answers were server errors:\n" + "\n".join(
        str(defect) for defect in unique.values()
    )
    assert set(outcome.cases) == {o.label for o in operations}
    assert len(reached) >= MIN_REACHED[role], reached


def live_session(
    session: requests.Session, world: World, role: str, spares: list[str]
) -> str | None:
    """A spare session still in force, else a new one (closing a space ends them all; its
    holder may still log in), else None (the log-in is refused, e.g. rate-limited)."""
    while spares:
        token = spares.pop(0)
        if viewer_type(session, world, token) == VIEWER_TYPES[role]:
            return token
    response = session.post(
        f"{world.url}/graphql",
        json={
            "query": "mutation($input: LoginInput!) { login(input: $input) { token } }",
            "variables": {"input": {"email": EMAILS[role], "password": DEMO_PASSWORD}},
        },
        timeout=REQUEST_TIMEOUT,
    )
    login = (response.json().get("data") or {}).get("login") or {}
    return login.get("token")


def cpu_of(world: World) -> float:
    """The server process's CPU time so far (Linux), for the summary; 0 where unknown."""
    try:
        fields = Path(f"/proc/{world.server.process.pid}/stat").read_text().split()
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def viewer_type(session: requests.Session, world: World, token: str | None) -> str | None:
    """Whom the server takes the caller for: the fuzzing runs with the session it means."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = session.post(
        f"{world.url}/graphql",
        json={"query": "{ viewer { __typename } }"},
        headers=headers,
        timeout=REQUEST_TIMEOUT,
    )
    viewer = (response.json().get("data") or {}).get("viewer")  # no data: the token failed
    return None if viewer is None else str(viewer["__typename"])
