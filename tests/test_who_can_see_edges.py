"""whoCanSee and previewAs at the edges the permission matrix does not reach (it holds one
relation per space): an emergency window that has ended beside one still open, an emergency
access whose professional is blocked since, or whose space opposes emergency access since, a
médecin traitant blocked since, an author blocked or out of consent, a consent beside an
emergency access, and a representative asking about a minor's space with these. In each,
what whoCanSee and previewAs say agrees, document by document and professional by
professional, with what that professional really gets (and the basis their read is logged
with), and asking reads nothing as them nor logs anything in their name."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

from models import consent as consents
from models.audit import AccessEvent
from models.base import utcnow
from models.consent import Consent, ConsentAccess, EmergencyAccess
from resolvers.ids import decode_as
from tests.factories import Person, Staff, make_minor, make_patient, make_professional
from tests.graphql import gql
from tests.test_documents import add

NODE = "query($id: ID!) { node(id: $id) { id } }"
WHO = """query($id: ID!) { whoCanSee(documentId: $id) {
  basis until professional { id } } }"""
PREVIEW = """query($p: ID, $pro: ID!) { previewAs(patientId: $p, professionalId: $pro) {
  basis until professional { id }
  documents(first: 100) { totalCount edges { node { id } } } } }"""
HIDE = """mutation($id: ID!) { setDocumentHidden(input: {documentId: $id, hidden: true})
  { document { id } } }"""


def pk(staff: Staff) -> UUID:
    return UUID(str(staff.pk))


@dataclass
class Space:
    subject: Person  # whose space
    manager_token: str  # the holder, or the minor's representative
    scoped: str | None  # patientId to name (a minor's), else None
    pros: dict[str, Staff] = field(default_factory=dict)
    documents: dict[str, str] = field(default_factory=dict)  # name -> global id


async def opened(space: Space, name: str, *, ended: bool = False) -> None:
    """An emergency access of that professional, by the domain; `ended`: its window closed
    a minute ago."""
    now = utcnow()
    access = await consents.open_emergency_access(
        space.subject.patient.id, pk(space.pros[name]), reason="Coma", now=now
    )
    if ended:
        await EmergencyAccess.filter(id=access.id).update(
            opened_at=now - timedelta(hours=25), expires_at=now - timedelta(minutes=1)
        )


async def granted(space: Space, name: str, access: ConsentAccess, hours: int | None = 2) -> None:
    now = utcnow()
    expires = now + timedelta(hours=hours) if hours is not None else None
    await consents.grant_consent(
        space.subject.patient.id,
        pk(space.pros[name]),
        access,
        expires_at=expires,
        now=now,
    )


async def deposit(
    client: httpx.AsyncClient, space: Space, name: str, token: str, **fields: Any
) -> None:
    space.documents[name] = await add(
        client, token, patientId=space.subject.id, title=name, **fields
    )


async def who_and_preview(
    http: httpx.AsyncClient, space: Space
) -> tuple[dict[str, dict[UUID, Any]], dict[UUID, Any], set[str]]:
    """whoCanSee of every document the manager sees, previewAs of every professional."""
    sees = {
        name
        for name, doc in space.documents.items()
        if (await gql(http, NODE, {"id": doc}, token=space.manager_token)).data["node"]
    }
    who: dict[str, dict[UUID, Any]] = {}
    for name, doc in space.documents.items():
        answer = await gql(http, WHO, {"id": doc}, token=space.manager_token)
        if name not in sees:
            assert answer.codes == ["NOT_FOUND"], (name, answer.body)
            continue
        who[name] = {
            decode_as(v["professional"]["id"], "Professional"): v for v in answer.ok()["whoCanSee"]
        }
    previews = {}
    for staff in space.pros.values():
        variables = {"p": space.scoped, "pro": staff.id}
        answer = await gql(http, PREVIEW, variables, token=space.manager_token)
        previews[pk(staff)] = answer.ok()["previewAs"]
    return who, previews, sees


async def real_reads(http: httpx.AsyncClient, space: Space, staff: Staff) -> dict[str, str | None]:
    """What the professional really gets of each document, and the basis of its event."""
    spk = space.subject.patient.id
    got: dict[str, str | None] = {}
    for name, doc in space.documents.items():
        last = await AccessEvent.filter(patient_id=spk).order_by("-seq").first()
        answer = await gql(http, NODE, {"id": doc}, token=staff.token)
        if answer.data["node"] is None:
            assert answer.codes == ["NOT_FOUND"], answer.body
            got[name] = None
            continue
        (event,) = await AccessEvent.filter(patient_id=spk, seq__gt=last.seq if last else 0)
        assert (event.actor_id, event.document_id) == (pk(staff), decode_as(doc, "Document"))
        got[name] = event.basis.value
    return got


async def until_of(space: Space, staff: Staff, basis: str) -> datetime | None:
    spk, now = space.subject.patient.id, utcnow()
    if basis == "CONSENT":
        consent = await Consent.get(patient_id=spk, professional_id=pk(staff), revoked_at=None)
        return consent.expires_at
    if basis == "EMERGENCY":
        access = await EmergencyAccess.get(
            patient_id=spk, professional_id=pk(staff), expires_at__gt=now
        )
        return access.expires_at
    return None


async def agreement(http: httpx.AsyncClient, space: Space) -> dict[str, dict[str, str | None]]:
    """Checks whoCanSee and previewAs against the real reads; returns the real reads, by
    professional and document (the basis, or None: not read)."""
    pks = [pk(staff) for staff in space.pros.values()]
    before = await AccessEvent.filter(actor_id__in=pks).count()
    who, previews, sees = await who_and_preview(http, space)
    assert await AccessEvent.filter(actor_id__in=pks).count() == before  # none in their name
    reads: dict[str, dict[str, str | None]] = {}
    for name, staff in space.pros.items():
        got = reads[name] = await real_reads(http, space, staff)
        for doc in sees:
            listed = who[doc].get(pk(staff))
            assert (listed is not None) == (got[doc] is not None), (name, doc, got)
            if listed is not None:
                assert listed["basis"] == got[doc], (name, doc)
                until = listed["until"]
                expected = await until_of(space, staff, listed["basis"])
                assert (None if until is None else datetime.fromisoformat(until)) == expected
        preview = previews[pk(staff)]
        shown = {edge["node"]["id"] for edge in preview["documents"]["edges"]}
        assert shown == {space.documents[d] for d in sees if got[d] is not None}, name
        assert preview["documents"]["totalCount"] == len(shown)
        dossier = got["plain"]
        assert preview["basis"] == (dossier if dossier != "AUTHOR" else None), name
    return reads


async def test_emergency_windows_blocks_and_authorship_agree_with_the_real_reads(
    client: httpx.AsyncClient,
) -> None:
    # given a holder's space and professionals in every edge of the rules
    holder = await make_patient("Alice", "Lefebvre")
    assert holder.token is not None
    space = Space(subject=holder, manager_token=holder.token, scoped=None)
    names = (
        "ended",  # an emergency window closed a minute ago
        "live",  # an emergency window open
        "live_blocked",  # an emergency window open, blocked since
        "treating_blocked",  # the médecin traitant, blocked since
        "consent_and_live",  # a consent and an emergency window
        "author_blocked",  # deposited under a consent, blocked since
        "author_expired",  # deposited under a consent that has expired since
        "stranger",  # no tie at all
    )
    for name in names:
        space.pros[name] = await make_professional(name.replace("_", "").capitalize())
    pid = holder.patient.id
    await consents.set_treating_doctor(pid, pk(space.pros["treating_blocked"]))
    await granted(space, "consent_and_live", ConsentAccess.READ, hours=None)
    for name in ("author_blocked", "author_expired"):
        await granted(space, name, ConsentAccess.READ_WRITE)
    # and documents: the holder's, one the holder hid, one each author deposited
    await deposit(client, space, "plain", holder.token)
    await deposit(client, space, "hidden", holder.token)
    (await gql(client, HIDE, {"id": space.documents["hidden"]}, token=holder.token)).ok()
    for name in ("author_blocked", "author_expired"):
        await deposit(client, space, name, space.pros[name].token, category="REPORT")
    # and the relations as they stand now
    for name in ("ended", "live", "live_blocked", "consent_and_live"):
        await opened(space, name, ended=name == "ended")
    for name in ("live_blocked", "treating_blocked", "author_blocked"):
        await consents.block_professional(pid, pk(space.pros[name]))
    await Consent.filter(patient_id=pid, professional_id=pk(space.pros["author_expired"])).update(
        expires_at=utcnow() - timedelta(minutes=1)
    )

    # when whoCanSee and previewAs are asked, then each professional reads
    reads = await agreement(client, space)

    # then they agree (checked in `agreement`), and the rules are those of DOMAIN.md
    assert reads["ended"] == dict.fromkeys(space.documents)  # the window is closed
    assert reads["live"] == {
        "plain": "EMERGENCY",
        "hidden": None,
        "author_blocked": "EMERGENCY",
        "author_expired": "EMERGENCY",
    }
    for name in ("live_blocked", "treating_blocked", "author_blocked", "stranger"):
        assert reads[name] == dict.fromkeys(space.documents), name  # a block wins
    assert reads["consent_and_live"]["plain"] == "CONSENT"
    assert reads["author_expired"] == {
        "plain": None,
        "hidden": None,
        "author_blocked": None,
        "author_expired": "AUTHOR",
    }


async def test_an_emergency_window_the_holder_opposes_since_agrees_with_the_real_reads(
    client: httpx.AsyncClient,
) -> None:
    holder = await make_patient("Alice", "Lefebvre")
    assert holder.token is not None
    space = Space(subject=holder, manager_token=holder.token, scoped=None)
    space.pros["live"] = await make_professional("Urgentiste")
    await deposit(client, space, "plain", holder.token)
    await opened(space, "live")
    await consents.set_emergency_opposition(holder.patient.id, True)

    reads = await agreement(client, space)

    assert set(reads["live"]) == {"plain"}  # whatever the rule says, both paths say it alike


async def test_a_representative_asks_about_a_minors_space_with_emergency_windows(
    client: httpx.AsyncClient,
) -> None:
    # given a minor's space, its representative, a médecin traitant, an open and a closed
    # emergency window, and a document hidden from representatives (deposited under consent)
    parent = await make_patient("Nadia", "Moreau")
    child = await make_minor(parent)
    assert parent.token is not None
    space = Space(subject=child, manager_token=parent.token, scoped=child.id)
    for name in ("treating", "author", "live", "ended", "stranger"):
        space.pros[name] = await make_professional(name.capitalize())
    await granted(space, "author", ConsentAccess.READ_WRITE)
    await consents.set_treating_doctor(child.patient.id, pk(space.pros["treating"]))
    await deposit(client, space, "plain", parent.token)
    await deposit(
        client, space, "secret", space.pros["author"].token, hiddenFromRepresentatives=True
    )
    await opened(space, "live")
    await opened(space, "ended", ended=True)

    reads = await agreement(client, space)

    # the parent is told nothing of the secret document (NOT_FOUND), and each view agrees
    assert reads["treating"] == {"plain": "TREATING_DOCTOR", "secret": "TREATING_DOCTOR"}
    assert reads["author"] == {"plain": "CONSENT", "secret": "CONSENT"}
    assert reads["live"] == {"plain": "EMERGENCY", "secret": "EMERGENCY"}
    assert reads["ended"] == reads["stranger"] == {"plain": None, "secret": None}
    # and the previews never show the parent a document hidden from them
    previews = (await who_and_preview(client, space))[1]
    secret = space.documents["secret"]
    for preview in previews.values():
        assert secret not in {e["node"]["id"] for e in preview["documents"]["edges"]}
