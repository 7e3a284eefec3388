"""whoCanSee and previewAs agree with what each professional actually gets, over the whole
permission matrix (tests/matrix_support.py: consent, expiry, revocation, block, médecin
traitant, emergency window, opposition, hidden documents, representatives, establishments),
and neither reads as the professional nor logs anything in their name."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from models.account import Account
from models.audit import AccessEvent
from models.base import utcnow
from models.consent import Consent, EmergencyAccess
from models.document import Document
from models.message import Conversation
from models.patient import Patient
from models.session import open_session
from resolvers.ids import decode_as, encode
from tests.factories import make_patient, make_professional
from tests.graphql import gql
from tests.matrix_support import Kind, Scenario
from tests.test_access_matrix import World, world  # noqa: F401 (the module's database)

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOCUMENTS = ("plain", "hidden", "pro", "pro_hidden")
NODE = "query($id: ID!) { node(id: $id) { id } }"
WHO = """query($id: ID!) { whoCanSee(documentId: $id) {
  basis until professional { id } } }"""
PREVIEW = """query($p: ID, $pro: ID!) { previewAs(patientId: $p, professionalId: $pro) {
  basis until professional { id }
  documents(first: 100) { totalCount edges { node { id title category } } } } }"""


async def token_of(**account: Any) -> str:
    row = await Account.get(**account)
    opened = await open_session(row, ttl=timedelta(hours=1), now=utcnow())
    assert opened.token is not None
    return opened.token


async def professionals_of(scenario: Scenario) -> set[UUID]:
    """Every professional tied to the subject, as the matrix built it, the actor included."""
    spk = scenario.subject_pk
    found: set[UUID] = set()
    for model in (Consent, EmergencyAccess, Conversation):
        rows = await model.filter(patient_id=spk).values_list("professional_id", flat=True)
        found |= {UUID(str(pk)) for pk in rows}
    authors = await Document.filter(patient_id=spk).values_list("author_professional_id", flat=True)
    found |= {UUID(str(pk)) for pk in authors if pk is not None}
    treating = await Patient.get(id=spk).values_list("treating_doctor_id", flat=True)
    if treating is not None:
        found.add(UUID(str(treating)))
    if scenario.actor_pk is not None and await Account.exists(professional_id=scenario.actor_pk):
        found.add(scenario.actor_pk)
    return found


def moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def real_reads(
    http: httpx.AsyncClient, scenario: Scenario, token: str
) -> dict[str, str | None]:
    """What a professional really gets of each document (by `node`, the path that also
    serves what they deposited), and the basis their read was logged with (None: not read)."""
    got: dict[str, str | None] = {}
    for name in DOCUMENTS:
        last = await AccessEvent.filter(patient_id=scenario.subject_pk).order_by("-seq").first()
        answer = await gql(http, NODE, {"id": scenario.ids[name]}, token=token)
        node = answer.data["node"]
        if node is None:
            assert answer.codes == ["NOT_FOUND"]
            got[name] = None
            continue
        assert node == {"id": scenario.ids[name]}
        (event,) = await AccessEvent.filter(
            patient_id=scenario.subject_pk, seq__gt=last.seq if last else 0
        )
        assert event.document_id == decode_as(scenario.ids[name], "Document")
        got[name] = event.basis.value
    return got


async def expected_until(scenario: Scenario, professional: UUID, basis: str) -> datetime | None:
    now = utcnow()
    if basis == "CONSENT":
        consent = await Consent.get(
            patient_id=scenario.subject_pk, professional_id=professional, revoked_at=None
        )
        return consent.expires_at
    if basis == "EMERGENCY":
        access = await EmergencyAccess.get(
            patient_id=scenario.subject_pk, professional_id=professional, expires_at__gt=now
        )
        return access.expires_at
    return None


@pytest.mark.parametrize("kind", list(Kind), ids=str)
async def test_who_can_see_and_preview_as_agree_with_the_real_reads(
    world: World,  # noqa: F811
    kind: Kind,
) -> None:
    http = world.http
    scenario = await world.scenario(kind)
    representative = kind is Kind.REPRESENTATIVE
    if representative:
        assert scenario.token is not None
        manager = scenario.token  # the parent, for the minor's space
    else:
        manager = await token_of(patient_id=scenario.subject_pk)
    space = None if not representative else scenario.subject_id
    stranger = await make_professional("Inconnu")
    pros = {*await professionals_of(scenario), stranger.pk}
    # what the manager sees (a representative does not see what is hidden from them)
    manager_sees = {
        name
        for name in DOCUMENTS
        if (await gql(http, NODE, {"id": scenario.ids[name]}, token=manager)).data["node"]
    }

    # what whoCanSee says of each document, asked before anyone reads
    before = await AccessEvent.filter(actor_id__in=list(pros)).count()
    who: dict[str, dict[UUID, dict[str, Any]]] = {}
    for name in DOCUMENTS:
        answer = await gql(http, WHO, {"id": scenario.ids[name]}, token=manager)
        if name not in manager_sees:
            assert answer.codes == ["NOT_FOUND"], (name, answer.body)
            continue
        who[name] = {
            decode_as(v["professional"]["id"], "Professional"): v for v in answer.ok()["whoCanSee"]
        }
    previews = {}
    for pro in pros:
        variables = {"p": space, "pro": encode("Professional", pro)}
        previews[pro] = (await gql(http, PREVIEW, variables, token=manager)).ok()["previewAs"]
    # nothing was read as them, nor logged in their name
    assert await AccessEvent.filter(actor_id__in=list(pros)).count() == before

    # then each professional's real reads agree, document by document, basis and expiry too
    for pro in sorted(pros):
        got = await real_reads(http, scenario, await token_of(professional_id=pro))
        for name in manager_sees:
            listed = who[name].get(pro)
            assert (listed is not None) == (got[name] is not None), (kind, name, pro, got)
            if listed is not None:
                assert listed["basis"] == got[name], (kind, name)
                until = await expected_until(scenario, pro, listed["basis"])
                assert moment(listed["until"]) == until, (kind, name)
        preview = previews[pro]
        shown = {edge["node"]["id"] for edge in preview["documents"]["edges"]}
        assert shown == {scenario.ids[n] for n in manager_sees if got[n] is not None}, kind
        assert preview["documents"]["totalCount"] == len(shown)
        # the dossier basis: that of their reads of a document they did not deposit
        assert preview["basis"] == (got["plain"] if got["plain"] != "AUTHOR" else None), kind
        assert preview["professional"] == {"id": encode("Professional", pro)}


async def test_only_the_holder_and_representatives_ask(world: World) -> None:  # noqa: F811
    scenario = await world.scenario(Kind.READ)
    http = world.http
    other = await make_patient("Bruno", "Moreau")
    assert scenario.token is not None and scenario.actor_pk is not None
    before = await AccessEvent.all().count()
    document = scenario.ids["plain"]
    pro = encode("Professional", scenario.actor_pk)

    # a professional who reads the document may not ask who else does
    as_pro = await gql(http, WHO, {"id": document}, token=scenario.token)
    # nor preview another's view of the space
    as_pro_preview = await gql(
        http, PREVIEW, {"p": scenario.subject_id, "pro": pro}, token=scenario.token
    )
    # another patient sees none of it
    as_other = await gql(http, WHO, {"id": document}, token=other.token)
    other_preview = await gql(
        http, PREVIEW, {"p": scenario.subject_id, "pro": pro}, token=other.token
    )
    anonymous = await gql(http, WHO, {"id": document})

    assert as_pro.codes == ["FORBIDDEN"]
    assert as_pro_preview.codes == ["FORBIDDEN"]
    assert as_other.codes == ["NOT_FOUND"]
    assert other_preview.codes == ["NOT_FOUND"]
    assert anonymous.codes == ["UNAUTHENTICATED"]
    assert await AccessEvent.all().count() == before


async def test_previewing_an_unknown_professional_is_bad_input(world: World) -> None:  # noqa: F811
    scenario = await world.scenario(Kind.HOLDER)
    assert scenario.token is not None
    for unknown in (encode("Professional", UUID(int=5)), "not-an-id"):
        answer = await gql(world.http, PREVIEW, {"p": None, "pro": unknown}, token=scenario.token)
        assert answer.codes == ["BAD_USER_INPUT"]
        assert answer.errors[0]["extensions"].get("field") == "professionalId"
