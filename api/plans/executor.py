"""The executor that follows a document's plan (api/plans/__init__.py), graphql-core's
for every field the plan has no reader for."""

from __future__ import annotations

from typing import Any

import graphql
from graphql import GraphQLObjectType, OperationType, Undefined
from graphql.execution.collect_fields import FieldDetailsList
from graphql.execution.executor import to_nodes
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from api.config import Settings
from api.plans.plan import PLANS, TYPENAME, DocumentPlan, LeafReader

# The executor overrides graphql-core's `execute_field` and mirrors its error handling:
# checked against this version (tests/test_plans_differential.py); another runs unplanned.
SUPPORTED_GRAPHQL_CORE = ("3.3.",)
_SUPPORTED = graphql.__version__.startswith(SUPPORTED_GRAPHQL_CORE)
_PLANNED_OPERATIONS = (OperationType.QUERY, OperationType.MUTATION)


def plans_enabled(context: object) -> bool:
    """`COMPILED_PLANS` of the settings a request's context carries (off without them)."""
    settings = getattr(context, "settings", None)
    return isinstance(settings, Settings) and settings.compiled_plans


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context, reading the fields its plan has a reader for."""

    _plan: DocumentPlan | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plan = None
        middleware = self.middleware_manager
        if (
            _SUPPORTED
            and self.operation.operation in _PLANNED_OPERATIONS
            and (middleware is None or not middleware.middlewares)
            and plans_enabled(self.context_value)
        ):
            self._plan = PLANS.plan_for(self.schema, self.operation)

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        plan = self._plan
        if plan is not None:
            reader = plan.reader(parent_type, field_details_list[0].node)
            if reader is TYPENAME:
                return parent_type.name
            if isinstance(reader, LeafReader):
                try:
                    if reader.attribute is None:
                        result = reader.resolve(source, None)  # strawberry's: no info
                    else:
                        result = getattr(source, reader.attribute)  # what it does
                except Exception as raw_error:
                    self.handle_field_error(raw_error, reader.field.type, field_details_list, path)
                    return None
                if (
                    result is not None
                    and result is not Undefined
                    and not isinstance(result, Exception)
                    and not self.is_awaitable(result)
                ):
                    try:
                        coerced = reader.coerce(result)
                    except Exception:
                        coerced = None  # graphql-core's completion raises it again, located
                    if coerced is not None and coerced is not Undefined:
                        return coerced
                return self._complete(
                    reader, parent_type, field_details_list, path, result, position_context
                )
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def _complete(
        self,
        reader: LeafReader,
        parent_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[Any]:
        """graphql-core's `execute_field` once the resolver has returned `result`: null,
        an error or anything its leaf type does not serialise is completed (and refused)
        exactly as there."""
        field = reader.field
        return_type = field.type
        info = self.build_resolve_info(field, to_nodes(field_details_list), parent_type, path)
        try:
            if self.is_awaitable(result):
                return self.complete_awaitable_value(
                    return_type, field_details_list, info, path, result, position_context
                )
            completed = self.complete_value(
                return_type, field_details_list, info, path, result, position_context
            )
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        return completed
