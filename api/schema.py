"""Composes the one schema from the domain mixins, with its schema-wide extensions.

In production (`ENVIRONMENT=production`) the schema is not served to clients, who read the
published `schema.graphql` instead: introspection (`__schema`, `__type`) is refused by
validation (`HiddenSchema`), and no error message suggests a name ("Did you mean …?",
after an unknown field, argument, type, enum value or input field: `Schema.process_errors`).
Elsewhere both stay, for GraphiQL and developers. One schema serves every environment,
since each request carries its settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.printer import print_schema
from strawberry.types import ExecutionContext
from strawberry.utils.str_converters import to_camel_case

from api.budget import CostBudget
from api.config import Settings
from api.extensions.access_announce import AnnounceAccessEvents
from api.extensions.errors import MaskInternalErrors
from api.extensions.limits import limit_extensions
from api.extensions.runner import HookRunner
from api.extensions.subscriptions import LeanSubscriptions
from api.extensions.text import RefuseNulCharacters
from api.plans import PlannedExecutor
from resolvers.agenda import AgendaMutation, Appointment, Reminder
from resolvers.auth import AuthMutation
from resolvers.catalogue import CatalogueMutation, CatalogueQuery, PartnerApp
from resolvers.consent import AccessEvent, Consent, ConsentMutation, ConsentQuery
from resolvers.cost import WRITE, Cost
from resolvers.dossier import Document, DossierMutation, Screening, Vaccination
from resolvers.establishment import EstablishmentMutation, EstablishmentQuery
from resolvers.holder import HolderQuery
from resolvers.lifecycle import LifecycleMutation
from resolvers.messaging import Attachment, Conversation, Message, MessagingMutation
from resolvers.node import NodeQuery
from resolvers.people import Establishment, Operator, Patient, PeopleQuery, Professional
from resolvers.scalars import SCALAR_OVERRIDES
from subscriptions.access_log import AccessLogSubscription
from subscriptions.conversations import ConversationSubscription
from subscriptions.reminders import ReminderSubscription
from subscriptions.schema import Subscription as MessageSubscription


@strawberry.type(
    description=(
        "Reads. Each field says who may call it; an object the viewer may not see answers "
        "NOT_FOUND, as one that does not exist."
    )
)
class Query(NodeQuery, PeopleQuery, ConsentQuery, HolderQuery, EstablishmentQuery, CatalogueQuery):
    pass


def _writes(mutation: type) -> type:
    """Every mutation is a write: one that declares no `@cost` of its own weighs WRITE."""
    for field in mutation.__strawberry_definition__.fields:  # type: ignore[attr-defined]
        if not any(isinstance(directive, Cost) for directive in field.directives):
            field.directives = [*field.directives, WRITE]
    return mutation


def _definition(type_: object) -> Any:
    """The strawberry definition of a field's or argument's type, optional or not."""
    type_ = getattr(type_, "of_type", type_)  # StrawberryOptional
    return getattr(type_, "__strawberry_definition__", None)


def _io_described(mutation: type) -> type:
    """Each mutation's `input` argument, input type and payload type, where they say nothing
    of their own: named after the mutation (their fields say the rest)."""
    for field in mutation.__strawberry_definition__.fields:  # type: ignore[attr-defined]
        name = field.graphql_name or to_camel_case(field.python_name)
        for argument in field.arguments:
            if argument.python_name != "input":
                continue
            argument.description = argument.description or f"What `{name}` is asked to do."
            definition = _definition(argument.type)
            if definition is not None and not definition.description:
                definition.description = f"The input of `{name}`."
        payload = _definition(field.type)
        if payload is not None and not payload.description:
            payload.description = f"What `{name}` answers."
    return mutation


@_io_described
@_writes
@strawberry.type(
    description=(
        "Writes, each in one transaction: on an error nothing is changed. Each field says "
        "who may call it."
    )
)
class Mutation(
    LifecycleMutation,
    AuthMutation,
    DossierMutation,
    ConsentMutation,
    MessagingMutation,
    EstablishmentMutation,
    AgendaMutation,
    CatalogueMutation,
):
    pass


@strawberry.type(
    description=(
        "Live events over the websocket of /graphql (graphql-transport-ws, or the legacy "
        "graphql-ws); the subscriber is re-authorised at each delivery."
    )
)
class Subscription(
    MessageSubscription, ConversationSubscription, ReminderSubscription, AccessLogSubscription
):
    pass


# graphql-core ends a message with its suggestions: " Did you mean 'a', 'b' or 'c'?",
# " Did you mean the enum value 'A'?", " Did you mean to use an inline fragment on 'T'?".
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def in_production(context: object) -> bool:
    settings = getattr(context, "settings", None)
    return isinstance(settings, Settings) and settings.environment == "production"


def without_suggestions(message: str) -> str:
    return _SUGGESTION.sub("", message)


class HiddenSchema(SchemaExtension):
    """In production, introspection is refused by validation (GRAPHQL_VALIDATION_FAILED);
    `__typename` stays. Subscriptions cannot introspect: `__schema` and `__type` are fields
    of the query type only."""

    def on_operation(self) -> Iterator[None]:
        execution_context = self.execution_context
        if in_production(execution_context.context):
            execution_context.validation_rules = (
                *execution_context.validation_rules,
                NoSchemaIntrospectionCustomRule,
            )
        yield


class Schema(LeanSubscriptions, strawberry.Schema):
    """Subscriptions run with a lighter extension set: api/extensions/subscriptions.py; the
    extensions' hooks run without strawberry's per-request wrapping: api/extensions/runner.py."""

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return HookRunner(execution_context=execution_context, extensions=extensions)

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """MaskInternalErrors logs what matters; expected errors (NOT_FOUND…) are not noise.
        In production, suggestions leave every message (validation, variables), before the
        errors are coded and answered."""
        if execution_context is not None and in_production(execution_context.context):
            for error in errors:
                error.message = without_suggestions(error.message)


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
            PartnerApp,
        ],
        scalar_overrides=SCALAR_OVERRIDES,  # described, with @specifiedBy: resolvers/scalars.py
        extensions=[
            MaskInternalErrors,
            *limit_extensions(),
            RefuseNulCharacters,
            HiddenSchema,
            CostBudget,  # after CostLimit: charges the cost of a valid request to its caller
            AnnounceAccessEvents,  # the live access logs hear of what the operation logged
        ],
        execution_context_class=PlannedExecutor,  # COMPILED_PLANS: api/plans/
    )


schema = build_schema()


def schema_sdl() -> str:
    return print_schema(schema) + "\n"
