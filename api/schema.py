"""Composes the one schema from the domain mixins, with its schema-wide extensions."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.printer import print_schema
from strawberry.schema.config import StrawberryConfig

from api.extensions.errors import MaskInternalErrors
from api.extensions.limits import limit_extensions
from api.extensions.subscriptions import LeanSubscriptions
from resolvers.agenda import AgendaMutation, Appointment, Reminder
from resolvers.auth import AuthMutation
from resolvers.consent import AccessEvent, Consent, ConsentMutation, ConsentQuery
from resolvers.cost import WRITE, Cost
from resolvers.dossier import Document, DossierMutation, Screening, Vaccination
from resolvers.lifecycle import LifecycleMutation
from resolvers.messaging import Attachment, Conversation, Message, MessagingMutation
from resolvers.node import NodeQuery
from resolvers.people import Establishment, Operator, Patient, PeopleQuery, Professional
from subscriptions.reminders import ReminderSubscription
from subscriptions.schema import Subscription as MessageSubscription


@strawberry.type
class Query(NodeQuery, PeopleQuery, ConsentQuery):
    pass


def _writes(mutation: type) -> type:
    """Every mutation is a write: one that declares no `@cost` of its own weighs WRITE."""
    for field in mutation.__strawberry_definition__.fields:  # type: ignore[attr-defined]
        if not any(isinstance(directive, Cost) for directive in field.directives):
            field.directives = [*field.directives, WRITE]
    return mutation


@_writes
@strawberry.type
class Mutation(
    LifecycleMutation,
    AuthMutation,
    DossierMutation,
    ConsentMutation,
    MessagingMutation,
    AgendaMutation,
):
    pass


@strawberry.type
class Subscription(MessageSubscription, ReminderSubscription):
    pass


class Schema(LeanSubscriptions, strawberry.Schema):
    """Subscriptions run with a lighter extension set: api/extensions/subscriptions.py."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """MaskInternalErrors logs what matters; expected errors (NOT_FOUND…) are not noise."""


def build_schema() -> strawberry.Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[
            Patient,
            Professional,
            Operator,
            Establishment,
            Document,
            Vaccination,
            Screening,
            Consent,
            AccessEvent,
            Conversation,
            Message,
            Attachment,
            Appointment,
            Reminder,
        ],
        extensions=[MaskInternalErrors, *limit_extensions()],
        config=StrawberryConfig(disable_field_suggestions=True),
    )


schema = build_schema()


def schema_sdl() -> str:
    return print_schema(schema) + "\n"
