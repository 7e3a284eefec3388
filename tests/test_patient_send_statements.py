"""A patient's `sendMessage` finds the conversation in one statement, the spaces the patient
manages being a subquery of it (resolvers/messaging.py `load_visible`), as a professional's
does: who may see it is decided there, at the moment of the send."""

from __future__ import annotations

import httpx

from models.patient import Patient, SpaceStatus
from tests.factories import make_minor, make_patient, make_professional
from tests.graphql import gql
from tests.messaging_support import SEND, started
from tests.sql_counter import count_statements
from tests.test_send_cost import TRANSACTION, send

# Session, conversation (with the managed spaces), the patient's relation to its space, then
# the transaction (bump, position, message), then the recipients.
PATIENT_SEND_STATEMENTS = 7


def _work(statements: list[str]) -> list[str]:
    return [s for s in statements if not s.lstrip().upper().startswith(TRANSACTION)]


async def test_a_patients_send_runs_a_fixed_set_of_statements(http: httpx.AsyncClient) -> None:
    staff = await make_professional()
    alice = await make_patient()
    cid = (await started(http, staff, alice))["conversation"]["id"]

    with count_statements() as statements:
        (await send(http, alice.token, cid, "Merci docteur.")).ok()

    work = _work(statements)
    assert len(work) == PATIENT_SEND_STATEMENTS, "\n".join(work)


async def test_a_representative_posts_for_the_minor_and_not_once_its_space_is_closed(
    http: httpx.AsyncClient,
) -> None:
    staff = await make_professional()
    parent = await make_patient()
    minor = await make_minor(parent)
    cid = (await started(http, staff, minor))["conversation"]["id"]
    variables = {"input": {"conversationId": cid, "body": "Pour ma fille."}}

    posted = (await gql(http, SEND, variables, token=parent.token)).ok()
    assert posted["sendMessage"]["message"]["onBehalfOf"]["id"] == minor.id

    await Patient.filter(id=minor.patient.id).update(status=SpaceStatus.CLOSED)
    refused = await gql(http, SEND, variables, token=parent.token)
    assert refused.data is None
    assert refused.codes == ["NOT_FOUND"]
