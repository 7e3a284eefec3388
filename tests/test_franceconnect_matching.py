"""The FranceConnect matching rule (DOMAIN.md, "FranceConnect") piece by piece and its cost
in SQL (models/franceconnect_matching.py), and the ticket's 60 seconds
(models/franceconnect.py). The same rules through the real provider: test_franceconnect.py."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest

from models.account import Account
from models.base import utcnow
from models.crypto import Vault, token_hash
from models.errors import Unauthenticated
from models.franceconnect import ProviderSession, complete_login, exchange_ticket
from models.franceconnect_matching import (
    LoginRefused,
    ProvenIdentity,
    Refusal,
    birth_place_code,
    find_person,
    first_given_name,
    fold_name,
    place_agrees,
    possible_nirs,
)
from models.identifiers import normalize_nir
from models.patient import Patient, Sex, SpaceStatus
from models.session import Session
from tests.conftest import SECRET
from tests.factories import vault
from tests.oidc.support import claims_of, enrolled
from tests.sql_counter import count_statements

TTL = timedelta(hours=1)


class Witness(Vault):
    """The real vault (the tests' key), noting what it decrypts."""

    __slots__ = ("decrypted",)

    def __init__(self, secret_key: str) -> None:
        super().__init__(secret_key)
        self.decrypted: list[str] = []

    def decrypt(self, blob: bytes, *, context: str) -> str:
        self.decrypted.append(context)
        return super().decrypt(blob, context=context)


@pytest.mark.parametrize(
    ("provider", "enrolled_as"),
    [
        ("HÉLÈNE", "Hélène"),
        ("helene", "Hélène"),
        ("LE GALL", "Le-Gall"),
        ("LE GALL", "Legall"),
        ("SAINT-ÉTIENNE", "Saint Étienne"),
        ("D'ARC", "d\u2019Arc"),  # a typographic apostrophe
        ("CŒUR", "Coeur"),
        ("MÜLLER", "Muller"),
        ("ÇA", "ca"),
    ],
)
def test_names_compare_without_accents_case_hyphens_or_spaces(
    provider: str, enrolled_as: str
) -> None:
    assert fold_name(provider) == fold_name(enrolled_as)


@pytest.mark.parametrize(("one", "other"), [("MARTIN", "MARTINE"), ("Léa", "Léo"), ("Anne", "")])
def test_other_names_stay_apart(one: str, other: str) -> None:
    assert fold_name(one) != fold_name(other)


def test_the_first_given_name_is_the_first_of_the_space_separated_ones() -> None:
    assert first_given_name("Jean-Pierre Marie  Joseph") == "Jean-Pierre"
    assert first_given_name("  Lucie ") == "Lucie"
    assert first_given_name("") == ""


@pytest.mark.parametrize(
    ("birthplace", "birthcountry", "code"),
    [
        ("75107", "99100", "75107"),  # Paris 7e
        ("2A004", "99100", "2A004"),  # Ajaccio
        ("2b033", "99100", "2B033"),  # Bastia
        ("97411", "99100", "97411"),  # Saint-Denis (La Réunion)
        ("", "99134", "99134"),  # born in Spain
        ("", "99100", None),  # born in France, no commune
        ("7510", "99100", None),
        ("", "134", None),
    ],
)
def test_the_birth_place_as_the_nir_writes_it(
    birthplace: str, birthcountry: str, code: str | None
) -> None:
    assert birth_place_code(birthplace, birthcountry) == code


@pytest.mark.parametrize(
    ("nir", "code", "agrees"),
    [
        ("284077510700112", "75107", True),
        ("284077510800112", "75107", False),
        ("28407991340011", "99134", True),  # born abroad: 99 + the country's code
        ("2840799134001", "99127", False),
        ("180042A00400134", "2A004", True),
        ("180042B03300134", "2B033", True),
        ("180042A00400134", "2B004", False),
        ("160082000400134", "2A004", True),  # born in Corsica before 1976: department 20
        ("160082003300134", "2B033", True),
        ("160082000400134", "2A033", False),
    ],
)
def test_the_birth_place_agrees_with_characters_6_to_10_of_the_nir(
    nir: str, code: str, agrees: bool
) -> None:
    assert place_agrees(nir, code) is agrees


def test_the_possible_nirs_of_an_identity_are_valid_and_cover_every_order_number() -> None:
    paris = possible_nirs(Sex.FEMALE, date(1984, 7, 21), "75107")
    ajaccio = possible_nirs(Sex.MALE, date(1960, 8, 15), "2A004")

    assert len(paris) == 999 and len(set(paris)) == 999
    assert {normalize_nir(n) for n in paris} == set(paris)  # valid keys
    assert {n[:10] for n in paris} == {"2840775107"}
    assert {n[10:13] for n in paris} == {f"{i:03d}" for i in range(1, 1000)}
    assert {n[:10] for n in ajaccio} == {"160082A004", "1600820004"}
    assert {normalize_nir(n) for n in ajaccio} == set(ajaccio)


async def test_the_candidates_are_filtered_in_sql_and_only_name_matches_decrypted(
    client: httpx.AsyncClient,
) -> None:
    # given many people born the same day (the same sex or not) and on other days
    born = date(1984, 7, 21)
    for n in range(15):
        await enrolled(f"Other{n}", "Vidal", born=born)
        await enrolled("Irène", "Vidal", born=born, sex=Sex.MALE)
        await enrolled("Irène", "Vidal", born=born + timedelta(days=n + 1))
    irene = await enrolled("Irène", "Vidal", born=born)
    seen = Witness(SECRET)

    # when her identity is matched
    with count_statements() as statements:
        found = await find_person(
            ProvenIdentity.from_claims(claims_of("Irène", "VIDAL")), vault=seen
        )

    # then one SELECT narrowed by birth date and sex, one NIR decrypted: hers
    assert found.id == irene.id
    assert len(statements) == 1
    assert "birth_date" in statements[0] and "sex" in statements[0]
    assert seen.decrypted == [f"patient.nir_encrypted:{irene.id}"]


async def test_a_ticket_is_valid_60_seconds(client: httpx.AsyncClient) -> None:
    # given two tickets issued at t
    person = await enrolled("Irène", "Vidal", email="irene@example.org")
    identity = ProvenIdentity.from_claims(claims_of("Irène", "VIDAL"))
    t = utcnow()
    first = await complete_login(identity, id_token="a.b.c", patient_hint=None, vault=vault, now=t)
    second = await complete_login(identity, id_token="a.b.c", patient_hint=None, vault=vault, now=t)

    # then one is exchanged at t + 59 s, the other is refused at t + 60 s
    result = await exchange_ticket(first, vault=vault, ttl=TTL, now=t + timedelta(seconds=59))
    assert result.account.patient_id == person.id and result.token
    with pytest.raises(Unauthenticated):
        await exchange_ticket(second, vault=vault, ttl=TTL, now=t + timedelta(seconds=60))
    assert await Session.all().count() == 1


async def test_a_space_closed_between_callback_and_exchange_logs_nobody_in(
    client: httpx.AsyncClient,
) -> None:
    person = await enrolled("Irène", "Vidal", email="irene@example.org")
    identity = ProvenIdentity.from_claims(claims_of("Irène", "VIDAL"))
    ticket = await complete_login(
        identity, id_token="a.b.c", patient_hint=None, vault=vault, now=utcnow()
    )
    await Patient.filter(id=person.id).update(status=SpaceStatus.CLOSED)

    with pytest.raises(Unauthenticated):
        await exchange_ticket(ticket, vault=vault, ttl=TTL, now=utcnow())

    assert await Session.all().count() == 0


async def test_a_new_account_takes_a_free_address(client: httpx.AsyncClient) -> None:
    # given three pending people, and addresses already taken by other accounts
    await enrolled("Taken", "Byfc", email="shared@example.org")
    await enrolled("Taken", "Bycontact", email="contact@example.org")
    people = [
        await enrolled(name, "Vidal", status=SpaceStatus.PENDING, contact_email=contact, born=born)
        for name, contact, born in (
            ("Irène", "irene.contact@example.org", date(1984, 7, 21)),
            ("Inès", "irene.contact@example.org", date(1985, 7, 21)),
            ("Iris", "contact@example.org", date(1986, 7, 21)),
        )
    ]

    # when each logs in through FranceConnect, Irène and Inès with a taken address, Iris too
    emails = ["free@example.org", "shared@example.org", "shared@example.org"]
    for patient, email in zip(people, emails, strict=True):
        claims = claims_of(patient.first_name, "VIDAL", born=patient.birth_date, email=email)
        await complete_login(
            ProvenIdentity.from_claims(claims),
            id_token="a.b.c",
            patient_hint=None,
            vault=vault,
            now=utcnow(),
        )

    # then each account has the provider's address, else the contact, else none that receives
    accounts = {
        a.patient_id: a.email for a in await Account.filter(patient_id__in=[p.id for p in people])
    }
    assert [accounts[p.id] for p in people] == [
        "free@example.org",
        "irene.contact@example.org",
        f"franceconnect-{people[2].id.hex}@espace-sante.invalid",
    ]


async def test_an_identity_that_cannot_be_compared_is_not_found(client: httpx.AsyncClient) -> None:
    await enrolled("Irène", "Vidal")
    for changes in ({"birthdate": "1984-13-40"}, {"gender": "other"}, {"birthplace": "Paris"}):
        identity = ProvenIdentity.from_claims({**claims_of("Irène", "VIDAL"), **changes})
        with pytest.raises(LoginRefused) as refused:
            await find_person(identity, vault=vault)
        assert refused.value.reason is Refusal.IDENTITY_NOT_FOUND


async def test_the_id_tokens_of_ended_sessions_go_at_the_next_login(
    client: httpx.AsyncClient,
) -> None:
    # given three FranceConnect sessions: one expired, one revoked, one live
    person = await enrolled("Irène", "Vidal", email="irene@example.org")
    identity = ProvenIdentity.from_claims(claims_of("Irène", "VIDAL"))
    t = utcnow()
    sessions = []
    for _ in range(3):
        ticket = await complete_login(
            identity, id_token="a.b.c", patient_hint=None, vault=vault, now=t
        )
        result = await exchange_ticket(ticket, vault=vault, ttl=TTL, now=t)
        assert result.token is not None
        sessions.append(await Session.get(token_hash=token_hash(result.token)))
    await Session.filter(id=sessions[0].id).update(expires_at=t - timedelta(seconds=1))
    await Session.filter(id=sessions[1].id).update(revoked_at=t)

    # when the person logs in once more
    ticket = await complete_login(identity, id_token="a.b.c", patient_hint=None, vault=vault, now=t)
    await exchange_ticket(ticket, vault=vault, ttl=TTL, now=t)

    # then only the live sessions keep an ID token
    kept = set(await ProviderSession.all().values_list("session_id", flat=True))
    assert sessions[0].id not in kept and sessions[1].id not in kept
    assert sessions[2].id in kept and len(kept) == 2
    assert await Account.filter(patient_id=person.id).count() == 1
