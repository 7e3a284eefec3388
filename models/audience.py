"""Whom to notify about a space: its holder's account and its current legal representatives'."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any
from uuid import UUID

from models.account import Account
from models.base import parameter_prefix
from models.patient import is_minor

# Every message sent runs this, so it is one statement, hand-written (the ORM took three
# queries: the whole Patient row, NIR included, then the representations, then the
# accounts). The same conditions as before: the accounts of the patient, of the given
# professional ({p}2, NULL for none), and of the patient's representatives, whom the caller
# keeps only while the patient is a minor (`is_minor` on the returned birth date, in Python,
# so that the rule stays models/patient.py's). {p}1 is the patient.
_ACCOUNTS = """
SELECT a.id,
    a.patient_id IS NOT NULL AND a.patient_id <> {p}1 AS representative,
    (SELECT birth_date FROM patient WHERE id = {p}1) AS birth_date
FROM account a
WHERE a.patient_id = {p}1 OR a.professional_id = {p}2
    OR a.patient_id IN (SELECT representative_id FROM representation WHERE dependent_id = {p}1)
"""


def _date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def notified_query(patient_id: UUID, professional_id: UUID | None = None) -> tuple[str, list[Any]]:
    """The statement of `notified_accounts` (its parameters numbered {p}1, {p}2), for a
    caller that runs it itself (with its transaction: models/message.py); `notified` reads
    its rows."""
    pro = str(professional_id) if professional_id is not None else None
    return _ACCOUNTS, [str(patient_id), pro]


def notified(rows: Iterable[Mapping[str, Any]], today: date) -> list[UUID]:
    """The accounts `notified_query`'s rows name, representatives only while the patient is
    a minor `today`."""
    accounts = []
    for row in rows:
        if row["representative"]:
            born = row["birth_date"]
            if born is None or not is_minor(_date(born), today):
                continue
        accounts.append(UUID(str(row["id"])))
    return accounts


async def notified_accounts(
    patient_id: UUID, today: date, *, professional_id: UUID | None = None
) -> list[UUID]:
    """The accounts of the patient, of its representatives while it is a minor, and of
    `professional_id` if given. None for a patient that does not exist (but the pro's)."""
    db = Account._meta.db
    sql, params = notified_query(patient_id, professional_id)
    rows = await db.execute_query_dict(sql.format(p=parameter_prefix(db)), params)
    return notified(rows, today)


async def managing_accounts(patient_id: UUID, today: date) -> list[UUID]:
    return await notified_accounts(patient_id, today)
