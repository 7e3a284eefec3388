"""The edge maps each domain error to one extensions.code and the client's input names."""

from __future__ import annotations

import pytest

from api.errors import from_domain, input_name
from models import errors as domain


@pytest.mark.parametrize(
    ("error", "extensions"),
    [
        (domain.NotFound(), {"code": "NOT_FOUND"}),
        (domain.Forbidden(), {"code": "FORBIDDEN"}),
        (domain.Unauthenticated(), {"code": "UNAUTHENTICATED"}),
        (domain.Conflict(), {"code": "CONFLICT"}),
        (domain.Invalid("x"), {"code": "BAD_USER_INPUT"}),
        (
            domain.Invalid("x", field="postal_address.postal_code"),
            {"code": "BAD_USER_INPUT", "field": "postalAddress.postalCode"},
        ),
        (
            domain.Invalid("x", field="attachments.2"),
            {"code": "BAD_USER_INPUT", "field": "attachments.2"},
        ),
        (
            domain.TooLarge("x", field="file"),
            {"code": "PAYLOAD_TOO_LARGE", "field": "file"},
        ),
        (domain.RateLimited(retry_after=90), {"code": "RATE_LIMITED", "retryAfter": 90}),
        (domain.RateLimited(retry_after=0), {"code": "RATE_LIMITED", "retryAfter": 1}),
        (domain.DomainError(), {"code": "INTERNAL_SERVER_ERROR"}),
    ],
)
def test_each_domain_error_has_one_code(
    error: domain.DomainError, extensions: dict[str, object]
) -> None:
    assert from_domain(error).extensions == extensions


def test_the_message_is_kept() -> None:
    assert from_domain(domain.Conflict("Closed meanwhile.")).message == "Closed meanwhile."


def test_an_edge_error_is_caught_as_its_domain_twin() -> None:
    from api.errors import NotFound

    with pytest.raises(domain.NotFound):
        raise NotFound()


@pytest.mark.parametrize(
    ("domain_name", "client_name"),
    [
        ("birth_date", "birthDate"),
        ("hidden_from_representatives", "hiddenFromRepresentatives"),
        ("postal_address.postal_code", "postalAddress.postalCode"),
        ("professionalId", "professionalId"),
        ("nir", "nir"),
    ],
)
def test_input_names(domain_name: str, client_name: str) -> None:
    assert input_name(domain_name) == client_name
