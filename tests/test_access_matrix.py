"""The permission matrix: every field of Patient, Document, Vaccination, Screening, Consent and
AccessEvent, through `patient`, `node`, `nodes` and the content route, for every kind of
viewer, generated from the one table below.

Each cell asserts the outcome of its field (ALLOWED, FORBIDDEN or NOT_FOUND) and the access
events its request wrote: none for a denial, exactly one for a read by anyone but the holder.
Requests are shared between the cells they serve (one per field where the audit must be
attributable to that field), so the whole matrix runs against one database in seconds.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from argon2 import PasswordHasher

import models.passwords
from api.app import create_app
from api.schema import schema
from models import persisted
from models.audit import AccessAction, AccessBasis, AccessEvent
from tests.conftest import PG_URL, UNLIMITED_BUDGET, _settings, _truncate_all
from tests.matrix_support import Kind, Scenario, build, missing_id

pytestmark = pytest.mark.asyncio(loop_scope="module")

A, F, N, U = "ALLOWED", "FORBIDDEN", "NOT_FOUND", "UNAUTHENTICATED"
_LETTERS = {"A": A, "F": F, "N": N}

IDENTITY = ("id", "firstName", "lastName", "birthDate", "sex", "status")
DOSSIER = ("documents", "healthProfile", "treatingDoctor", "vaccinations", "screenings")
MANAGED = (
    "nir",
    "consents",
    "emergencyAccessOpposed",
    "accessLog",
    "representatives",
    "appGrants",
    "blockedProfessionals",
    "deleteBy",
)
LATER = ("conversations", "reminders", "calendarFeedUrl", "unreadMessageCount")
# What the viewer may do with the space: answered (true or false) to whoever sees it.
CAPABILITIES = (
    "viewerCanReadDossier",
    "viewerCanWriteDossier",
    "viewerCanBookAppointment",
    "viewerCanStartConversation",
)
DOCUMENT = (
    "id",
    "title",
    "category",
    "date",
    "createdAt",
    "mimeType",
    "size",
    "sha256",
    "hidden",
    "hiddenFromRepresentatives",
    "author",
    "contentUrl",
    "viewerCanDelete",
    "viewerCanHide",
)
VACCINATION = ("id", "vaccine", "date", "doseNumber", "lotNumber", "professional")
SCREENING = ("id", "kind", "date", "result")
CONSENT = ("id", "professional", "access", "grantedAt", "expiresAt", "revokedAt", "active")
EVENT = ("id", "at", "action", "actor", "role", "basis", "establishment")


@dataclass(frozen=True)
class Row:
    outcomes: str  # one letter per Kind, in Kind order
    type_name: str
    obj: str  # "subject", or the scenario's object name
    fields: tuple[str, ...]
    # One request per field through `patient`, so that the access event is attributed to
    # the field itself (`node` and `nodes` reach the same field resolvers, grouped).
    per_field: bool = False

    def outcome(self, kind: Kind) -> str:
        return _LETTERS[self.outcomes.split()[list(Kind).index(kind)]]


# The one table. Columns, in Kind order:
# anonymous holder representative other_patient no_consent read read_write expired revoked
# blocked treating emergency opposed operator member former_member other_establishment
# app_all app_identity (partner apps granted every read scope, or IDENTITY_READ alone).
# Through `node`/`nodes` an object the viewer may not see is NOT_FOUND; through `patient` the
# same object is absent from its list (and its count), and the list itself follows the
# Patient row of its field. The representative column runs against a minor subject.
# An anonymous viewer gets NOT_FOUND, not UNAUTHENTICATED: an object the viewer may not see
# answers exactly as an id that does not exist (API "Errors"); UNAUTHENTICATED is for the
# operations that need a role, and for the content route called without credentials.
# "pro" and "pro_hidden" were deposited as hidden from representatives by a professional:
# the actor itself in the read_write, expired, revoked and blocked columns (its author
# keeps reading it without a consent, never once blocked); "pro_hidden" and "hidden" were
# then hidden by the holder.
TABLE = (
    #    an ho re ot no rd rw ex rv bl td em op oper me fm oe aa ai
    Row("N  A  A  N  N  A  A  N  N  N  A  A  N  A  A  N  N  A  A", "Patient", "subject", IDENTITY),
    Row(
        "N  A  A  N  N  A  A  N  N  N  A  A  N  A  A  N  N  A  A",
        "Patient",
        "subject",
        CAPABILITIES,
    ),
    Row(
        "N  A  A  N  N  A  A  N  N  N  A  A  N  F  F  N  N  A  F",
        "Patient",
        "subject",
        DOSSIER,
        True,
    ),
    Row(
        "N  A  A  N  N  F  F  N  N  N  F  F  N  F  F  N  N  F  F",
        "Patient",
        "subject",
        MANAGED,
        True,
    ),
    Row(
        "N  A  F  N  N  F  F  N  N  N  F  F  N  F  F  N  N  F  F",
        "Patient",
        "subject",
        ("dependents",),
    ),
    # The agenda's and the messagerie's fields, as their guards declare them.
    Row(
        "N  A  A  N  N  A  A  N  N  N  A  A  N  F  F  N  N  A  F",
        "Patient",
        "subject",
        ("appointments",),
    ),
    Row("N  A  A  N  N  F  F  N  N  N  F  F  N  F  F  N  N  F  F", "Patient", "subject", LATER),
    Row("N  A  A  N  N  A  A  N  N  N  A  A  N  N  N  N  N  A  N", "Document", "plain", DOCUMENT),
    Row("N  A  A  N  N  N  N  N  N  N  A  N  N  N  N  N  N  N  N", "Document", "hidden", DOCUMENT),
    Row("N  A  N  N  N  A  A  A  A  N  A  A  N  N  N  N  N  A  N", "Document", "pro", DOCUMENT),
    Row(
        "N  A  N  N  N  N  A  A  A  N  A  N  N  N  N  N  N  N  N",
        "Document",
        "pro_hidden",
        DOCUMENT,
    ),
    Row(
        "N  A  A  N  N  A  A  N  N  N  A  A  N  N  N  N  N  A  N",
        "Vaccination",
        "vaccination",
        VACCINATION,
    ),
    Row(
        "N  A  A  N  N  A  A  N  N  N  A  A  N  N  N  N  N  A  N",
        "Screening",
        "screening",
        SCREENING,
    ),
    Row("N  A  A  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N", "Consent", "consent", CONSENT),
    # The event is a professional's deposit of "pro", hidden from representatives: its
    # traces are too, so the representative finds the event neither listed nor by id.
    Row("N  A  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N", "AccessEvent", "event", EVENT),
    Row(
        "N  A  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N",
        "AccessEvent",
        "event",
        ("document",),
    ),
)

# Fetching a space by id (`patient`, `node`, `nodes`) is a read of it: identity included,
# every allowed read by a non-holder writes exactly one event.
AUDIT_PENDING: set[tuple[str, str]] = set()
LIST_FIELD = {
    "Document": "documents",
    "Vaccination": "vaccinations",
    "Screening": "screenings",
    "Consent": "consents",
    "AccessEvent": "accessLog",
}
CONNECTIONS = {"documents", "accessLog"}
# The consent of the table is live; its event (a deposit) went through no establishment.
NULLABLE = {
    ("Consent", "revokedAt"),
    ("AccessEvent", "establishment"),
    ("Patient", "deleteBy"),  # no deletion requested of a live space
}
SUBSELECTION = {
    ("Patient", "documents"): "documents(first: 50) { totalCount edges { node { id } } }",
    ("Patient", "healthProfile"): "healthProfile { allergies }",
    ("Patient", "treatingDoctor"): "treatingDoctor { id }",
    ("Patient", "vaccinations"): "vaccinations { id }",
    ("Patient", "screenings"): "screenings { id }",
    ("Patient", "consents"): "consents { id }",
    ("Patient", "accessLog"): "accessLog(first: 100) { totalCount edges { node { id } } }",
    ("Patient", "dependents"): "dependents { id }",
    ("Patient", "appointments"): "appointments { totalCount }",
    ("Patient", "conversations"): "conversations { totalCount }",
    ("Patient", "reminders"): "reminders { totalCount }",
    ("Patient", "representatives"): "representatives { id }",
    ("Patient", "appGrants"): "appGrants { scopes }",
    ("Patient", "blockedProfessionals"): "blockedProfessionals { id }",
    # __typename only: reading the author's names would be a read of the author's space.
    ("Document", "author"): "author { __typename }",
    ("Vaccination", "professional"): "professional { id }",
    ("Consent", "professional"): "professional { id }",
    ("AccessEvent", "actor"): "actor { __typename }",
    ("AccessEvent", "document"): "document { id }",
    ("AccessEvent", "establishment"): "establishment { id }",
}
BASIS = {
    Kind.REPRESENTATIVE: AccessBasis.REPRESENTATIVE,
    Kind.READ: AccessBasis.CONSENT,
    Kind.READ_WRITE: AccessBasis.CONSENT,
    Kind.EXPIRED: AccessBasis.AUTHOR,
    Kind.REVOKED: AccessBasis.AUTHOR,
    Kind.TREATING: AccessBasis.TREATING_DOCTOR,
    Kind.EMERGENCY: AccessBasis.EMERGENCY,
    Kind.OPERATOR: AccessBasis.OPERATOR,
    Kind.MEMBER: AccessBasis.CONVERSATION,  # in a conversation of the hospital's inbox
    Kind.APP_ALL: AccessBasis.APP,
    Kind.APP_IDENTITY: AccessBasis.APP,
}


@dataclass(frozen=True)
class Cell:
    kind: Kind
    path: str  # patient | node | nodes | content
    row: Row
    field: str
    expect: str

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.path}-{self.row.type_name}.{self.row.obj}.{self.field}"

    @property
    def probe(self) -> tuple[Any, ...]:
        """The request this cell's answer comes from."""
        if self.path == "content":
            return (self.kind, self.path, self.row.obj)
        if self.row.type_name != "Patient" and self.path == "patient":
            return (self.kind, self.path, self.row.type_name)
        return (self.kind, self.path, self.row, self.field if self.split else None)

    @property
    def split(self) -> bool:
        return self.row.per_field and self.path == "patient"


def _identity_outcome(kind: Kind) -> str:
    return next(r.outcome(kind) for r in TABLE if r.type_name == "Patient" and "id" in r.fields)


def _list_outcome(kind: Kind, type_name: str) -> str:
    name = LIST_FIELD[type_name]
    return next(r.outcome(kind) for r in TABLE if r.type_name == "Patient" and name in r.fields)


def _cells() -> list[Cell]:
    cells: list[Cell] = []
    for kind in Kind:
        for row in TABLE:
            own = row.outcome(kind)
            for path in ("patient", "node", "nodes"):
                expect = own
                if path == "patient" and row.type_name != "Patient":
                    listed = _list_outcome(kind, row.type_name)
                    expect = own if listed == A else listed
                cells.extend(Cell(kind, path, row, name, expect) for name in row.fields)
            if row.type_name == "Document" and row.fields == DOCUMENT:
                # The content route is plain HTTP: no credentials is 401 whatever the id (no
                # existence oracle), where GraphQL answers an anonymous viewer NOT_FOUND.
                cells.append(
                    Cell(kind, "content", row, "bytes", U if kind is Kind.ANONYMOUS else own)
                )
    return cells


CELLS = _cells()


def expected_events(cell: Cell) -> int:
    """Access events the cell's request must write: one per read by a non-holder, none for
    a denial. A denied field of an object the viewer reads adds none to the object's own."""
    if cell.kind is Kind.HOLDER:
        return 0
    if cell.path == "content":
        return 1 if cell.expect == A else 0
    if cell.row.type_name == "Patient":
        # Fetching the space is the read; a denied field of it adds nothing and takes
        # nothing away.
        return 1 if _identity_outcome(cell.kind) == A else 0
    if cell.path == "patient":
        # `patient(id:)` fetched the space: that read is the event, whatever its lists say.
        return 1 if _identity_outcome(cell.kind) == A else 0
    return 1 if cell.expect in (A, F) else 0


# --- the requests ----------------------------------------------------------------------------


def _selection(type_name: str, fields: tuple[str, ...]) -> str:
    return " ".join(SUBSELECTION.get((type_name, name), name) for name in fields)


def _query(cell: Cell) -> str:
    row = cell.row
    fields = (cell.field,) if cell.split else row.fields
    if row.type_name != "Patient" and cell.path == "patient":
        every = tuple(
            dict.fromkeys(f for r in TABLE if r.type_name == row.type_name for f in r.fields)
        )
        inner = _selection(row.type_name, every)
        name = LIST_FIELD[row.type_name]
        if name in CONNECTIONS:
            body = f"{name}(first: 100) {{ totalCount edges {{ node {{ {inner} }} }} }}"
        else:
            body = f"{name} {{ {inner} }}"
        return "query($id: ID!) { patient(id: $id) { " + body + " } }"
    inner = _selection(row.type_name, fields)
    if cell.path == "patient":
        return "query($id: ID!) { patient(id: $id) { " + inner + " } }"
    fragment = f"... on {row.type_name} {{ {inner} }}"
    if cell.path == "node":
        return "query($id: ID!) { node(id: $id) { " + fragment + " } }"
    return "query($ids: [ID!]!) { nodes(ids: $ids) { " + fragment + " } }"


@dataclass
class Probe:
    body: dict[str, Any] | None
    response: httpx.Response
    events: list[AccessEvent]


@dataclass
class World:
    http: httpx.AsyncClient
    scenarios: dict[Kind, Scenario] = field(default_factory=dict)
    probes: dict[tuple[Any, ...], Probe] = field(default_factory=dict)

    async def scenario(self, kind: Kind) -> Scenario:
        if kind not in self.scenarios:
            self.scenarios[kind] = await build(self.http, kind)
        return self.scenarios[kind]

    async def probe(self, cell: Cell, scenario: Scenario) -> Probe:
        key = cell.probe
        if key not in self.probes:
            self.probes[key] = await self._send(cell, scenario)
        return self.probes[key]

    async def _send(self, cell: Cell, scenario: Scenario) -> Probe:
        headers = {"Authorization": f"Bearer {scenario.token}"} if scenario.token else {}
        before = await AccessEvent.all().count()
        target = _target(cell, scenario)
        if cell.path == "content":
            response = await self.http.get(f"/documents/{target}/content", headers=headers)
        else:
            query = _query(cell)
            variables: dict[str, Any] = {"id": target}
            if cell.path == "nodes":
                variables = {"ids": [missing_id(cell.row.type_name), target]}
            elif cell.path == "patient":
                variables = {"id": scenario.subject_id}
            body: dict[str, Any] = {"query": query, "variables": variables}
            if scenario.app_client is not None:
                # A partner app sends only documents registered on its list.
                body = {"documentId": await _registered(query, scenario.app_client)}
                body["variables"] = variables
            response = await self.http.post("/graphql", json=body, headers=headers)
        written = await AccessEvent.all().count() - before
        events = await AccessEvent.all().order_by("-created_at").limit(written) if written else []
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return Probe(body=response.json() if is_json else None, response=response, events=events)


async def _registered(query: str, client: str) -> str:
    entry = persisted.ManifestEntry(persisted.sha256_hex(query), query, None, None)
    await persisted.load_manifest(
        persisted.Manifest("matrix", (entry,)), client=client, registered_by="matrix"
    )
    return f"sha256:{entry.sha256}"


def _target(cell: Cell, scenario: Scenario) -> str:
    return scenario.subject_id if cell.row.obj == "subject" else scenario.ids[cell.row.obj]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(db_template: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            models.passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
        )
        folder = tmp_path_factory.mktemp("matrix")
        if PG_URL:
            await _truncate_all(db_template)
            url = db_template
        else:
            shutil.copyfile(db_template, folder / "db.sqlite3")
            url = f"sqlite://{folder / 'db.sqlite3'}"
        app = create_app(_settings(folder, url, **UNLIMITED_BUDGET))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield World(http)


# --- the assertions --------------------------------------------------------------------------


def _errors(body: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    found: dict[tuple[Any, ...], str] = {}
    for error in body.get("errors") or []:
        code = error.get("extensions", {}).get("code")
        assert code in (F, N), error  # anything else is a bug, never a denial
        found[tuple(error.get("path") or ())] = code
    return found


def _check_field(
    cell: Cell, obj: dict[str, Any], at: tuple[Any, ...], errors: dict[tuple[Any, ...], str]
) -> None:
    where = (*at, cell.field)
    if cell.expect == F:
        assert obj[cell.field] is None, obj
        assert errors.get(where) == F, errors
        return
    assert not [p for p in errors if p[: len(where)] == where], errors
    if (cell.row.type_name, cell.field) not in NULLABLE:
        assert obj[cell.field] is not None, obj


def _check_graphql(cell: Cell, scenario: Scenario, body: dict[str, Any]) -> None:
    errors = _errors(body)
    data = body["data"]
    target = _target(cell, scenario)
    if cell.path == "nodes":
        assert data["nodes"][0] is None
        assert errors.get(("nodes", 0)) == N
    if cell.row.type_name == "Patient" or cell.path != "patient":
        at: tuple[Any, ...] = {"patient": ("patient",), "node": ("node",), "nodes": ("nodes", 1)}[
            cell.path
        ]
        root = data["nodes"][1] if cell.path == "nodes" else data[cell.path]
        if cell.expect == N:
            assert root is None, root
            assert errors.get(at) == N, errors
            return
        assert root is not None, errors
        if "id" in root:
            assert root["id"] == target
        _check_field(cell, root, at, errors)
        return
    # A child object through its list on the patient.
    name = LIST_FIELD[cell.row.type_name]
    listed = _list_outcome(cell.kind, cell.row.type_name)
    if listed == N:
        assert data["patient"] is None
        assert errors.get(("patient",)) == N, errors
        return
    if listed == F:
        assert data["patient"][name] is None
        assert errors.get(("patient", name)) == F, errors
        return
    value = data["patient"][name]
    items: list[tuple[dict[str, Any], tuple[Any, ...]]]
    if name in CONNECTIONS:
        items = [
            (e["node"], ("patient", name, "edges", i, "node")) for i, e in enumerate(value["edges"])
        ]
        assert value["totalCount"] == len(items)  # the count is filtered as the page is
    else:
        items = [(item, ("patient", name, i)) for i, item in enumerate(value)]
    match = [(item, at) for item, at in items if item["id"] == target]
    if cell.expect == N:
        assert match == [], items
        return
    assert len(match) == 1, items
    _check_field(cell, match[0][0], match[0][1], errors)


def _check_content(cell: Cell, scenario: Scenario, probe: Probe) -> None:
    status = {A: 200, N: 404, U: 401}[cell.expect]
    assert probe.response.status_code == status
    if cell.expect == A:
        assert probe.response.content == scenario.content[cell.row.obj]
    else:
        assert probe.body is not None
        assert [e["extensions"]["code"] for e in probe.body["errors"]] == [cell.expect]


def _check_events(cell: Cell, scenario: Scenario, probe: Probe) -> None:
    count = expected_events(cell)
    if (cell.row.type_name, cell.field) in AUDIT_PENDING and count:
        return
    assert len(probe.events) == count, [(e.action, e.basis) for e in probe.events]
    if not count:
        return
    (event,) = probe.events
    assert event.patient_id == scenario.subject_pk
    assert event.actor_id == scenario.actor_pk
    assert event.action is (AccessAction.DOWNLOAD if cell.path == "content" else AccessAction.READ)
    assert event.basis is BASIS[cell.kind]
    per_document = cell.row.type_name == "Document" and cell.path != "patient"
    assert event.document_id == (scenario.pk(cell.row.obj, "Document") if per_document else None)


def _cases() -> dict[str, list[Cell]]:
    """A case is one viewer, one path and one row of the table; it asserts every field."""
    cases: dict[str, list[Cell]] = {}
    for cell in CELLS:
        name = f"{cell.kind}-{cell.path}-{cell.row.type_name}.{cell.row.obj}"
        if cell.row.type_name == "Patient" or cell.row.obj == "event":
            name += f"[{cell.row.fields[0]}..]" if len(cell.row.fields) > 1 else f"[{cell.field}]"
        cases.setdefault(name, []).append(cell)
    return cases


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
async def test_matrix(world: World, name: str) -> None:
    failures: list[str] = []
    for cell in CASES[name]:
        scenario = await world.scenario(cell.kind)

        probe = await world.probe(cell, scenario)

        try:
            if cell.path == "content":
                _check_content(cell, scenario, probe)
            else:
                assert probe.body is not None, probe.response.text
                _check_graphql(cell, scenario, probe.body)
            _check_events(cell, scenario, probe)
        except AssertionError as exc:
            failures.append(f"{cell.id} (expected {cell.expect}): {str(exc).splitlines()[0]}")
    assert not failures, "\n".join(failures)


@pytest.mark.asyncio(loop_scope="module")
async def test_the_table_covers_every_field_of_its_types() -> None:
    for type_name in ("Patient", "Document", "Vaccination", "Screening", "Consent", "AccessEvent"):
        graphql_type = schema._schema.get_type(type_name)
        assert graphql_type is not None
        covered = {f for row in TABLE if row.type_name == type_name for f in row.fields}
        assert set(graphql_type.fields) == covered, type_name  # type: ignore[attr-defined]
