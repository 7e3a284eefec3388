"""The baseline of bench/dossier.py: the same read, hand-written, on plain Starlette.

POST /dossier takes the GraphQL request's body (only its `variables` are read) and answers
the same JSON as GraphQL: the 20 newest documents a professional under consent may read,
with their authors, after the same checks (session, then the relation to the patient:
live space, not blocked, a basis) and the same access event. Raw aiosqlite on one
connection with Tortoise's pragmas, as the real app runs it.

Run: DATA_DIR=… uvicorn bench.plain_app:create_app --factory
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiosqlite
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.audit import GENESIS, link

SESSION = """
SELECT a.role, a.professional_id
FROM session s JOIN account a ON a.id = s.account_id
WHERE s.token_hash = ? AND s.revoked_at IS NULL AND s.expires_at > ?
"""

# The relation of one professional to one patient, in one statement.
RELATION = """
SELECT p.status IN ('PENDING', 'ACTIVE') AS live,
       p.treating_doctor_id IS NOT NULL AND p.treating_doctor_id = :pro AS treating,
       EXISTS (SELECT 1 FROM consent c WHERE c.patient_id = p.id AND c.professional_id = :pro
               AND c.revoked_at IS NULL AND (c.expires_at IS NULL OR c.expires_at > :now))
           AS consent,
       EXISTS (SELECT 1 FROM emergency_access e WHERE e.patient_id = p.id
               AND e.professional_id = :pro AND e.expires_at > :now) AS emergency,
       EXISTS (SELECT 1 FROM block b WHERE b.patient_id = p.id AND b.professional_id = :pro)
           AS blocked
FROM patient p WHERE p.id = :patient
"""

# The access event, chained as models/audit.py chains it: the space's head moved (and
# locked), the event with its position and hash, the head's new hash; in one transaction.
HEAD = """
INSERT INTO access_log_head (id, created_at, patient_id, seq, chain_hash, last_at)
VALUES (?, ?, ?, 1, ?, ?)
ON CONFLICT (patient_id) DO UPDATE SET seq = access_log_head.seq + 1, last_at = excluded.last_at
RETURNING seq, chain_hash
"""
EVENT = """
INSERT INTO access_event (id, created_at, at, actor_id, actor_role, action, basis,
                          document_id, request_id, patient_id, seq, chain_hash)
VALUES (?, ?, ?, ?, 'PROFESSIONAL', 'READ', ?, NULL, ?, ?, ?, ?)
"""
SEAL = "UPDATE access_log_head SET chain_hash = ? WHERE patient_id = ?"

DOCUMENTS = """
SELECT d.title, d.category, d.date, d.author_professional_id, d.author_patient_id,
       pr.last_name AS pro_last_name, pa.last_name AS patient_last_name
FROM document d
LEFT JOIN professional pr ON pr.id = d.author_professional_id
LEFT JOIN patient pa ON pa.id = d.author_patient_id
WHERE d.patient_id = :patient AND (:all OR d.hidden = 0 OR d.author_professional_id = :pro)
ORDER BY d.date DESC, d.created_at DESC, d.id DESC
LIMIT :limit
"""


def _error(status: int, code: str) -> Response:
    return JSONResponse({"errors": [{"message": code, "extensions": {"code": code}}]}, status)


def _patient_pk(global_id: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
        kind, _, pk = raw.partition(":")
        return str(uuid.UUID(pk)) if kind == "Patient" else None
    except ValueError:
        return None


def _author(row: Any) -> dict[str, str] | None:
    if row["author_professional_id"] is not None:
        name = row["pro_last_name"]
    elif row["author_patient_id"] is not None:
        name = row["patient_last_name"]
    else:
        return None
    return None if name is None else {"lastName": name}


async def _write_event(
    db: aiosqlite.Connection, patient: str, pro: str, basis: str, now: datetime, now_db: str
) -> None:
    event_id, request_id = str(uuid.uuid4()), uuid.uuid4().hex
    await db.execute("BEGIN IMMEDIATE")
    try:
        head = (str(uuid.uuid4()), now_db, patient, GENESIS, now_db)
        async with db.execute(HEAD, head) as cursor:
            seq, previous = await cursor.fetchone()
        chain_hash = link(
            previous,
            {
                "id": event_id,
                "seq": seq,
                "patient_id": patient,
                "at": now,
                "created_at": now,
                "actor_id": pro,
                "actor_role": "PROFESSIONAL",
                "action": "READ",
                "basis": basis,
                "document_id": None,
                "request_id": request_id,
            },
        )
        event = (event_id, now_db, now_db, pro, basis, request_id, patient, seq, chain_hash)
        async with db.execute(EVENT, event):
            pass
        async with db.execute(SEAL, (chain_hash, patient)):
            pass
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


def create_app() -> Starlette:
    data_dir = os.environ.get("DATA_DIR") or "data"
    path = os.path.join(data_dir, "espace-sante.sqlite3")
    state: dict[str, aiosqlite.Connection] = {}
    transactions = asyncio.Lock()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = aiosqlite.Row
        for pragma in ("journal_mode=WAL", "journal_size_limit=16384", "foreign_keys=ON"):
            await (await db.execute(f"PRAGMA {pragma}")).close()
        state["db"] = db
        try:
            yield
        finally:
            await db.close()

    async def dossier(request: Request) -> Response:
        db = state["db"]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "UNAUTHENTICATED")
        body = json.loads(await request.body())
        variables = body.get("variables") or {}
        now = datetime.now(UTC)
        now_db = now.isoformat(" ")
        digest = hashlib.sha256(token.encode()).hexdigest()
        async with db.execute(SESSION, (digest, now_db)) as cursor:
            session = await cursor.fetchone()
        if session is None:
            return _error(401, "UNAUTHENTICATED")
        pro = session["professional_id"]
        patient = _patient_pk(str(variables.get("id", "")))
        if session["role"] != "PROFESSIONAL" or pro is None or patient is None:
            return _error(403, "FORBIDDEN")
        params = {"pro": pro, "now": now_db, "patient": patient}
        async with db.execute(RELATION, params) as cursor:
            relation = await cursor.fetchone()
        if relation is None or not relation["live"] or relation["blocked"]:
            return _error(404, "NOT_FOUND")
        if relation["treating"]:
            basis = "TREATING_DOCTOR"
        elif relation["consent"]:
            basis = "CONSENT"
        elif relation["emergency"]:
            basis = "EMERGENCY"
        else:
            return _error(404, "NOT_FOUND")
        async with transactions:  # one connection: one transaction at a time, as Tortoise
            await _write_event(db, patient, pro, basis, now, now_db)
        limit = max(0, min(int(variables.get("first") or 20), 100))
        params = {"patient": patient, "pro": pro, "all": relation["treating"], "limit": limit}
        async with db.execute(DOCUMENTS, params) as cursor:
            rows = await cursor.fetchall()
        edges = [
            {
                "node": {
                    "title": row["title"],
                    "category": row["category"],
                    "date": row["date"],
                    "author": _author(row),
                }
            }
            for row in rows
        ]
        return JSONResponse({"data": {"patient": {"documents": {"edges": edges}}}})

    return Starlette(routes=[Route("/dossier", dossier, methods=["POST"])], lifespan=lifespan)
