"""The domain's errors: what went wrong, in the domain's words.

The domain knows nothing of GraphQL or HTTP. The edge (api/errors.py) maps each class to one
`extensions.code` and each field's domain name (`postal_address.postal_code`) to the name
of the input a client sent (`postalAddress.postalCode`).
"""

from __future__ import annotations


class DomainError(Exception):
    default_message = "The operation failed."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class Unauthenticated(DomainError):
    """No valid credentials or session: who is calling is unknown."""

    default_message = "Authentication required."


class Forbidden(DomainError):
    default_message = "You are not allowed to do this."


class NotFound(DomainError):
    """Missing, or not visible to the actor: the two are never told apart."""

    default_message = "Not found."


class Conflict(DomainError):
    default_message = "Conflicts with the current state."


class Invalid(DomainError):
    """A value the domain refuses; `field` is its domain name, dotted inside a structure
    (`postal_address.postal_code`, `attachments.2`)."""

    default_message = "Invalid input."

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TooLarge(Invalid):
    default_message = "Payload too large."


class RateLimited(DomainError):
    default_message = "Too many attempts; try again later."

    def __init__(self, message: str | None = None, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


__all__ = [
    "Conflict",
    "DomainError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "RateLimited",
    "TooLarge",
    "Unauthenticated",
]
