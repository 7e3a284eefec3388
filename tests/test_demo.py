"""The demo world (`espace-sante seed-demo`): loaded once, every login works, the rules hold,
and the README's examples answer what the README says."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from tortoise.backends.base.executor import EXECUTOR_CACHE

import models.passwords
from api.app import create_app
from api.cli import main
from api.config import Settings
from models.blobs import ACCEPTED_MIME_TYPES, sniff_mime
from models.demo import DEMO_PASSWORD
from tests.test_cli import development_env

README = Path(__file__).parent.parent / "README.md"
LOGIN = """
mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { token viewer { __typename } }
}"""
ROLES = {"operator": "Operator", "professional": "Professional", "patient": "Patient"}


@pytest.fixture(autouse=True)
def fresh_query_cache() -> Iterator[None]:
    """As in tests/test_cli.py: these tests run SQLite in-process, whatever the suite runs on."""
    EXECUTOR_CACHE.clear()
    yield
    EXECUTOR_CACHE.clear()


def seed() -> list[str]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["seed-demo"]) == 0
    return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def seeded_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """`seed-demo` on a fresh data directory (migrations included), once for the module."""
    folder = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as monkeypatch:
        development_env(monkeypatch, folder)
        cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
        monkeypatch.setattr(models.passwords, "_hasher", cheap)
        EXECUTOR_CACHE.clear()
        lines = seed()
    return folder, lines


@pytest.fixture
def demo(
    seeded_once: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A copy of the seeded data directory (database, blobs, key), for this test alone."""
    data_dir = tmp_path / "data"
    shutil.copytree(seeded_once[0], data_dir)
    development_env(monkeypatch, data_dir)
    return data_dir


def counts(data_dir: Path) -> dict[str, int]:
    with closing(sqlite3.connect(data_dir / "espace-sante.sqlite3")) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        found = {
            name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names
        }
    found["blob files"] = sum(1 for path in (data_dir / "blobs").rglob("*") if path.is_file())
    return found


@asynccontextmanager
async def api() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings.from_env())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def post(
    http: httpx.AsyncClient, payload: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.post("/graphql", json=payload, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def log_in(http: httpx.AsyncClient, email: str, password: str) -> str:
    data = await post(http, {"query": LOGIN, "variables": {"email": email, "password": password}})
    token: str = data["login"]["token"]
    return token


def logins(lines: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """The password and the (role, e-mail) pairs that `seed-demo` printed."""
    (password,) = re.findall(r"password for all: (\S+)\)", "\n".join(lines))
    pairs = [
        (match[1], match[2])
        for line in lines
        if (match := re.match(r"\s+(operator|professional|patient)\s+(\S+@\S+)", line))
    ]
    return password, pairs


def try_it() -> str:
    """The README's examples: from "## Try it" to the next section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Try it\n")
    return text[start : text.index("\n#", start + 1)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", try_it(), re.DOTALL)


def words(query: str) -> str:
    return " ".join(query.split())


# --- loaded once ------------------------------------------------------------------------

WORLD = {
    "access_event": 45,
    "account": 9,
    "app_grant": 1,
    "appointment": 14,
    "attachment": 9,
    "blob files": 18,
    "block": 1,
    "consent": 6,
    "conversation": 6,
    "document": 14,
    "emergency_access": 1,
    "establishment": 1,
    "establishment_member": 2,
    "health_profile": 3,
    "member_read_mark": 1,
    "message": 16,
    "operator": 1,
    "partner_app": 1,
    "patient": 4,
    "professional": 5,
    "read_mark": 11,
    "representation": 2,
    "screening": 2,
    "vaccination": 15,
}


def test_seed_demo_twice_leaves_the_same_world(
    seeded_once: tuple[Path, list[str]], demo: Path
) -> None:
    first_lines = seeded_once[1]
    before = counts(demo)

    second_lines = seed()

    assert first_lines[-11] == "demo data loaded"
    assert second_lines[-11] == "demo data already loaded"
    assert second_lines[-10:] == first_lines[-10:]
    assert counts(demo) == before
    world = {name: before[name] for name in WORLD}  # not reminders: flu is seasonal
    assert world == WORLD


async def test_every_demo_login_works(seeded_once: tuple[Path, list[str]], demo: Path) -> None:
    password, accounts = logins(seeded_once[1])

    async with api() as http:
        viewers = [
            (
                role,
                (
                    await post(
                        http, {"query": LOGIN, "variables": {"email": email, "password": password}}
                    )
                )["login"],
            )
            for role, email in accounts
        ]

    assert password == "demo-password-2026"
    assert [role for role, _ in accounts] == ["operator", *["professional"] * 5, *["patient"] * 3]
    for role, login in viewers:
        assert login["viewer"] == {"__typename": ROLES[role]}
        assert isinstance(login["token"], str)


# --- the README's examples --------------------------------------------------------------


async def test_the_readme_curl_example_reads_jeans_dossier(demo: Path) -> None:
    (commands,) = blocks("sh")[:1]
    login_payload, dossier_payload = (
        json.loads(p) for p in re.findall(r"-d '(\{.*?\})'", commands)
    )

    async with api() as http:
        token = (await post(http, login_payload))["login"]["token"]
        viewer = (await post(http, dossier_payload, token))["viewer"]
        downloads = {}
        for edge in viewer["documents"]["edges"]:
            url = edge["node"]["contentUrl"]
            assert url.startswith("http://127.0.0.1:8000/documents/")
            response = await http.get(
                url.removeprefix("http://127.0.0.1:8000"),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200
            downloads[edge["node"]["title"]] = (sniff_mime(response.content), len(response.content))

    assert (viewer["firstName"], viewer["lastName"]) == ("Jean", "Petit")
    assert viewer["treatingDoctor"] == {"firstName": "Claire", "lastName": "Martin"}
    documents = [edge["node"] for edge in viewer["documents"]["edges"]]
    assert viewer["documents"]["totalCount"] == len(documents) == 7  # "Seven documents"
    assert {d["mimeType"] for d in documents} == {
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/tiff",
        "application/rtf",
        "text/plain",
    }
    assert {title: mime for title, (mime, _) in downloads.items()} == {
        d["title"]: d["mimeType"] for d in documents
    }
    assert all(size > 500 for _, size in downloads.values())  # real files, not placeholders
    assert sorted(v["vaccine"] for v in viewer["vaccinations"]) == [
        "COVID19",
        "COVID19",
        "DTP",
        "INFLUENZA",
    ]
    reminders = [edge["node"] for edge in viewer["reminders"]["edges"]]
    assert reminders[0]["kind"] == "APPOINTMENT"  # tomorrow's consultation, 48 hours before
    assert {"APPOINTMENT", "VACCINATION", "EMERGENCY_ACCESS"} == {r["kind"] for r in reminders}
    log = [edge["node"] for edge in viewer["accessLog"]["edges"]]
    assert len(log) == 6
    assert {event["actor"]["lastName"] for event in log} <= {"Martin", "Benali", "Garnier"}


def test_the_readme_graphiql_example_is_the_curl_query() -> None:
    commands = blocks("sh")[0]
    login_payload, dossier_payload = (
        json.loads(p) for p in re.findall(r"-d '(\{.*?\})'", commands)
    )
    login, dossier, dashboard, inbox = blocks("graphql")

    assert words(login) == words(login_payload["query"])
    assert words(dossier) == words(dossier_payload["query"])
    assert "... on Professional" in dashboard
    assert "memberOf" in inbox


async def test_the_demo_professional_sees_what_the_readme_says(demo: Path) -> None:
    login, _, dashboard, _ = blocks("graphql")
    (said,) = re.findall(
        r"It lists (\d+) patients \(([^)]*)\) and (\d+)\s+conversations, (\d+) of them",
        try_it(),
    )
    as_martin = login.replace("jean@", "dr.martin@")

    async with api() as http:
        token = (await post(http, {"query": as_martin}))["login"]["token"]
        viewer = (await post(http, {"query": dashboard}, token))["viewer"]

    patients = [edge["node"] for edge in viewer["patients"]["edges"]]
    conversations = viewer["conversations"]["nodes"]
    unread = [c for c in conversations if c["unreadCount"] > 0]
    assert viewer["unread"]["totalCount"] == len(unread)
    assert viewer["unreadMessageCount"] == sum(c["unreadCount"] for c in unread)
    assert all(c["lastMessage"]["cursor"] for c in conversations)
    assert {e["access"] for e in viewer["patients"]["edges"]} <= {"READ", "READ_WRITE"}
    assert (viewer["firstName"], viewer["lastName"]) == ("Claire", "Martin")
    assert viewer["patients"]["totalCount"] == len(patients) == int(said[0])
    assert [f"{p['firstName']} {p['lastName']}" for p in patients] == said[1].split(", ")
    assert viewer["conversations"]["totalCount"] == len(conversations) == int(said[2])
    assert sum(1 for c in conversations if c["unreadCount"] > 0) == int(said[3])
    assert [c["closed"] for c in conversations].count(True) == 1  # Thomas's sick note


async def test_the_demo_hospital_inbox_is_what_the_readme_says(demo: Path) -> None:
    login, _, _, inbox = blocks("graphql")
    (said,) = re.findall(
        r"It lists (\d+) admission conversation, ([^,]*)'s, with (\d+) message Dr Benali",
        " ".join(try_it().split()),
    )

    async with api() as http:
        seen = {}
        for member in ("dr.benali", "e.garnier"):
            as_member = login.replace("jean@", f"{member}@")
            token = (await post(http, {"query": as_member}))["login"]["token"]
            seen[member] = (await post(http, {"query": inbox}, token))["viewer"]["memberOf"]

    (hospital,) = seen["dr.benali"]
    conversations = [edge["node"] for edge in hospital["conversations"]["edges"]]
    assert hospital["name"] == "Hôpital des Tilleuls (fictif)"
    assert len(conversations) == int(said[0]) == 1
    (admission,) = conversations
    assert admission["purpose"] == "ADMISSION"
    assert f"{admission['patient']['firstName']} {admission['patient']['lastName']}" == said[1]
    assert admission["unreadCount"] == int(said[2])
    # the other member read it: each member has their own unread count
    assert seen["e.garnier"][0]["conversations"]["edges"][0]["node"]["unreadCount"] == 0


# --- the rules hold in the world --------------------------------------------------------

CAMILLE = """
{ viewer { ... on Patient {
    id
    consents { professional { lastName } access active expiresAt revokedAt }
    conversations(first: 10) { edges { node {
      subject unreadCount
      messages(first: 10) { edges { node { attachments { filename mimeType } } } }
    } } }
    documents(first: 10) { edges { node { title hidden } } }
    dependents { id firstName documents(first: 10) { totalCount } vaccinations { vaccine } }
} } }"""
PATIENT = "query($id: ID!) { patient(id: $id) { firstName } }"


async def test_consents_blocks_and_representation_hold_in_the_demo(demo: Path) -> None:
    now = datetime.now(UTC)
    async with api() as http:
        camille = (
            await post(
                http,
                {"query": CAMILLE},
                await log_in(http, "camille@demo.espace-sante.localhost", "demo-password-2026"),
            )
        )["viewer"]
        seen = {}
        for email in ("dr.moreau", "s.lambert", "dr.benali", "dr.martin"):
            token = await log_in(http, f"{email}@demo.espace-sante.localhost", "demo-password-2026")
            response = await http.post(
                "/graphql",
                json={"query": PATIENT, "variables": {"id": camille["id"]}},
                headers={"Authorization": f"Bearer {token}"},
            )
            body = response.json()
            seen[email] = (
                body["data"]["patient"],
                [e["extensions"]["code"] for e in body.get("errors", [])],
            )
        thomas = await log_in(http, "thomas@demo.espace-sante.localhost", "demo-password-2026")
        leo = camille["dependents"][0]
        thomas_sees = await post(http, {"query": PATIENT, "variables": {"id": leo["id"]}}, thomas)

    consents = {c["professional"]["lastName"]: c for c in camille["consents"]}
    assert {name: c["active"] for name, c in consents.items()} == {
        "Martin": True,
        "Lambert": False,
        "Moreau": False,
    }
    lambert = consents["Lambert"]
    assert lambert["revokedAt"] is None
    assert datetime.fromisoformat(lambert["expiresAt"]) < now  # expired, not revoked
    assert consents["Moreau"]["revokedAt"] is not None
    assert seen == {
        "dr.moreau": (None, ["NOT_FOUND"]),  # blocked
        "s.lambert": (None, ["NOT_FOUND"]),  # consent expired
        "dr.benali": (None, ["NOT_FOUND"]),  # never had a basis for Camille
        "dr.martin": ({"firstName": "Camille"}, []),
    }
    (conversation,) = (edge["node"] for edge in camille["conversations"]["edges"])
    assert conversation["unreadCount"] == 1
    attachments = [
        a for edge in conversation["messages"]["edges"] for a in edge["node"]["attachments"]
    ]
    assert attachments == [
        {"filename": "compte-rendu-echographie-thyroide.pdf", "mimeType": "application/pdf"}
    ]
    hidden = [
        edge["node"]["title"] for edge in camille["documents"]["edges"] if edge["node"]["hidden"]
    ]
    assert hidden == ["Compte rendu — consultation de psychologie"]
    assert (leo["firstName"], leo["documents"]["totalCount"], len(leo["vaccinations"])) == (
        "Léo",
        5,
        6,
    )
    assert thomas_sees == {"patient": {"firstName": "Léo"}}


JEAN = """
{ viewer { ... on Patient {
    healthProfile { allergies treatments trustedPerson { name relationship } }
    screenings { kind result }
    appointments(first: 20) { edges { node { title status startsAt source } } }
    reminders(first: 50) { edges { node { kind status reason } } }
    accessLog(first: 50) {
      edges { node { action basis actor { ... on Professional { lastName } }
        establishment { name } } }
    }
} } }"""


async def test_jeans_year_reads_as_a_story(demo: Path) -> None:
    now = datetime.now(UTC)
    async with api() as http:
        token = await log_in(http, "jean@demo.espace-sante.localhost", "demo-password-2026")
        jean = (await post(http, {"query": JEAN}, token))["viewer"]

    assert jean["healthProfile"]["allergies"] == ["Pénicilline (urticaire)"]
    assert jean["healthProfile"]["trustedPerson"] == {
        "name": "Camille Durand",
        "relationship": "fille",
    }
    assert jean["screenings"] == [
        {
            "kind": "COLORECTAL",
            "result": "Test immunologique fécal négatif. Prochain test dans 2 ans.",
        }
    ]
    appointments = [edge["node"] for edge in jean["appointments"]["edges"]]
    past = [a for a in appointments if datetime.fromisoformat(a["startsAt"]) < now]
    ahead = [a for a in appointments if datetime.fromisoformat(a["startsAt"]) > now]
    assert {a["status"] for a in past} == {"DONE"}
    assert [(a["title"], a["status"], a["source"]) for a in ahead] == [
        ("Consultation — renouvellement d'ordonnance", "SCHEDULED", "PROFESSIONAL"),
        ("Vaccination contre le zona", "SCHEDULED", "PLATFORM"),
    ]
    reminders = [edge["node"] for edge in jean["reminders"]["edges"]]
    sent = {(r["kind"], r["reason"].split(" ")[0]) for r in reminders if r["status"] == "SENT"}
    assert ("EMERGENCY_ACCESS", "Karim") in sent
    assert {r["reason"] for r in reminders if r["kind"] == "VACCINATION"} >= {
        "Aucune dose de vaccin contre le pneumocoque enregistrée.",
        "Aucune dose de vaccin contre le zona enregistrée.",
    }
    assert [r["status"] for r in reminders if r["kind"] == "APPOINTMENT"].count("PENDING") == 3
    events = [edge["node"] for edge in jean["accessLog"]["edges"]]
    story = [(e["actor"]["lastName"], e["action"], e["basis"]) for e in reversed(events)]
    assert story == [
        ("Martin", "READ", "TREATING_DOCTOR"),
        ("Martin", "WRITE", "TREATING_DOCTOR"),  # books his check-up
        ("Martin", "READ", "TREATING_DOCTOR"),
        ("Martin", "WRITE", "TREATING_DOCTOR"),
        ("Martin", "WRITE", "TREATING_DOCTOR"),
        ("Benali", "LOOKUP", "LOOKUP"),
        ("Benali", "EMERGENCY_OPEN", "EMERGENCY"),
        ("Benali", "READ", "EMERGENCY"),
        ("Benali", "DOWNLOAD", "EMERGENCY"),
        ("Benali", "READ", "EMERGENCY"),
        ("Martin", "READ", "TREATING_DOCTOR"),
        ("Martin", "DOWNLOAD", "TREATING_DOCTOR"),
        ("Martin", "WRITE", "TREATING_DOCTOR"),  # books tomorrow's consultation
        ("Garnier", "READ", "CONVERSATION"),  # the hospital's admission nurse reads his reply
        ("Garnier", "DOWNLOAD", "CONVERSATION"),  # and opens his questionnaire
    ]
    assert [e["establishment"] for e in events[:2]] == [
        {"name": "Hôpital des Tilleuls (fictif)"}
    ] * 2
    assert {e["establishment"] is None for e in events[2:]} == {True}


# --- a year of a family's care, every file real ------------------------------------------

FILES = """
fragment Files on Patient {
  firstName
  documents(first: 10) { edges { node { title mimeType size sha256 contentUrl } } }
  appointments(first: 1) { edges { node { startsAt } } }
  conversations(first: 5) { edges { node {
    messages(first: 5) { edges { node {
      attachments { filename mimeType size sha256 contentUrl }
    } } }
  } } }
}
{ viewer { ... on Patient { ...Files dependents { ...Files } } } }"""


async def test_the_familys_year_has_real_files_and_reaches_today(demo: Path) -> None:
    """Every document and attachment of the world downloads as bytes of its type (its size
    and SHA-256), the story spans a year up to the day it was loaded, and each of the four
    has something to read."""
    now = datetime.now(UTC)
    with closing(sqlite3.connect(demo / "espace-sante.sqlite3")) as conn:
        first, last = (
            datetime.fromisoformat(at)
            for at in conn.execute("SELECT min(at), max(at) FROM access_event").fetchone()
        )
    files: dict[str, dict[str, Any]] = {}
    people: dict[str, dict[str, Any]] = {}
    async with api() as http:
        for holder in ("camille", "thomas", "jean"):
            token = await log_in(http, f"{holder}@demo.espace-sante.localhost", DEMO_PASSWORD)
            viewer = (await post(http, {"query": FILES}, token))["viewer"]
            for person in [viewer, *viewer["dependents"]]:
                people[person["firstName"]] = person
                found = [edge["node"] for edge in person["documents"]["edges"]] + [
                    attachment
                    for conversation in person["conversations"]["edges"]
                    for message in conversation["node"]["messages"]["edges"]
                    for attachment in message["node"]["attachments"]
                ]
                for item in found:
                    response = await http.get(
                        item["contentUrl"].removeprefix("http://127.0.0.1:8000"),
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert response.status_code == 200, item
                    data = response.content
                    assert sniff_mime(data) == item["mimeType"], item
                    assert len(data) == item["size"] > 500, item  # real files, not stubs
                    assert hashlib.sha256(data).hexdigest() == item["sha256"], item
                    files[item["sha256"]] = item

    assert 360 <= (now - first).days <= 400  # a year of care
    assert (now - last).days <= 7  # up to the day it was loaded
    assert sorted(people) == ["Camille", "Jean", "Léo", "Thomas"]
    for name, person in people.items():
        assert person["appointments"]["edges"], name
        assert person["documents"]["edges"] or person["conversations"]["edges"], name
    assert {item["mimeType"] for item in files.values()} == ACCEPTED_MIME_TYPES
    # the 14 documents and 9 attachments, some attachments saved into the dossier (one blob)
    assert len(files) == WORLD["blob files"]
