"""What a client learns of a malformed input: BAD_USER_INPUT (or validation) naming the
offending field, and never the value it sent, which may be a NIR or a name."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.graphql import gql

NIR = "284057505612387"
ENROL = "mutation($i: EnrollPatientInput!) { enrollPatient(input: $i) { patient { id } } }"
BY_NIR = "query($n: String!, $d: Date!) { patientByNir(nir: $n, birthDate: $d) { id } }"


def enrolment(**changes: Any) -> dict[str, Any]:
    return {
        "nir": NIR,
        "firstName": "Camille",
        "lastName": "Moreau",
        "birthDate": "1984-05-02",
        "sex": "FEMALE",
        "channel": "POST",
        "postalAddress": {"line1": "12 rue des Lilas", "postalCode": "69003", "city": "Lyon"},
        **changes,
    }


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        (enrolment(nir=int(NIR)), "nir"),
        (enrolment(sex="DRAGON"), "sex"),
        (enrolment(birthDate="1984-13-02"), "birthDate"),
        (
            enrolment(postalAddress={"line1": "1 rue", "postalCode": 69003, "city": NIR}),
            "postalAddress.postalCode",
        ),
    ],
    ids=["nir-as-number", "enum", "date", "nested"],
)
async def test_a_bad_variable_names_its_field_and_not_its_value(
    client: httpx.AsyncClient, variables: dict[str, Any], field: str
) -> None:
    result = await gql(client, ENROL, {"i": variables})

    [error] = result.errors
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
    assert NIR not in error["message"]
    assert "DRAGON" not in error["message"] and "1984-13-02" not in error["message"]
    assert error["message"].startswith("Variable '$i' has invalid value")


async def test_a_nir_sent_as_a_number_is_not_repeated(client: httpx.AsyncClient) -> None:
    as_variable = await gql(client, BY_NIR, {"n": int(NIR), "d": "1984-05-02"})
    as_literal = await gql(
        client, f'{{ patientByNir(nir: {NIR}, birthDate: "1984-05-02") {{ id }} }}'
    )
    spaced = await gql(
        client,
        'query($n: Int) { professionals(search: "x", first: $n) { id } }',
        {"n": "2 84 05 75 056 123 87"},
    )

    assert as_variable.codes == ["BAD_USER_INPUT"]
    assert as_literal.codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert spaced.codes == ["BAD_USER_INPUT"]
    for result in (as_variable, as_literal, spaced):
        message = result.errors[0]["message"]
        assert "cannot represent" in message  # what was wrong stays
        assert NIR not in message and "056 123" not in message, message
