"""The executor that follows a document's plan (api/plans/__init__.py), graphql-core's
for every field the plan has no reader for."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import graphql
from graphql import (
    GraphQLAbstractType,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLResolveInfoHelpers,
    OperationType,
    Undefined,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.execution.executor import to_nodes
from graphql.execution.values import get_argument_values
from graphql.pyutils import AwaitableOrValue, Path, gather_with_cancel
from strawberry.exceptions import PermissionReturnedNonBooleanError
from strawberry.permission import PermissionExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE

from api.config import Settings
from api.plans.plan import (
    NO_CHECK,
    PLANS,
    TYPENAME,
    AsyncResolverReader,
    DocumentPlan,
    LeafReader,
    ObjectReader,
    ResolverReader,
)

# The executor overrides graphql-core's `execute_field` and mirrors its error handling:
# checked against this version (tests/test_plans_differential.py); another runs unplanned.
SUPPORTED_GRAPHQL_CORE = ("3.3.",)
_SUPPORTED = graphql.__version__.startswith(SUPPORTED_GRAPHQL_CORE)
_PLANNED_OPERATIONS = (OperationType.QUERY, OperationType.MUTATION)


def plans_enabled(context: object) -> bool:
    """`COMPILED_PLANS` of the settings a request's context carries (off without them)."""
    settings = getattr(context, "settings", None)
    return isinstance(settings, Settings) and settings.compiled_plans


Entry = tuple[str, FieldDetailsList, Any]  # response name, field group, reader (or None)

_BASE = StrawberryGraphQLCoreExecutionContext


def _gather_async_work(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
    """`Executor.gather_async_work`, which does not use its executor."""
    return gather_with_cancel(*values)


def _weak_tracker(executor: _BASE) -> Callable[[Sequence[Any]], None]:
    """`executor.track_async_work`, through a weak reference to the executor."""
    # A plain weak reference (C) rather than a WeakMethod (Python): built per request.
    reference = weakref.ref(executor)

    def track(values: Sequence[Any]) -> None:
        tracked = reference()
        if tracked is None:
            raise RuntimeError("async work tracked after its operation was over")
        tracked.track_async_work(values)

    return track


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context, reading the fields its plan has a reader for."""

    _plan: DocumentPlan | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # graphql-core's helpers are two bound methods of the executor, which holds them: a
        # reference cycle that left every operation (its context, loaders, rows) to the
        # cyclic collector. The same helpers, not holding the executor: gathering never
        # needed it, and tracking is called while the executor runs, so it is alive.
        self.async_helpers = GraphQLResolveInfoHelpers(
            gather=_gather_async_work, track=_weak_tracker(self)
        )
        self._plan = None
        # (object type, id of its field group) -> (the group, kept alive; its entries)
        self._entries: dict[tuple[str, int], tuple[FieldDetailsList, list[Entry] | None]] = {}
        # The hoisted permissions (ResolverReader.hoisted) granted in this operation, by id;
        # kept alive by the plan's readers. Never kept past the operation.
        self._granted: set[int] = set()
        # Asynchronous fields are awaited by the plan only where graphql-core would await
        # them plainly (`with_abort_signal` without a signal).
        self._awaits = self.abort_signal is None
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
            if type(reader) is LeafReader:
                return self._read_leaf(reader, parent_type, source, field_details_list, path)
            if position_context is None:
                if type(reader) is ObjectReader:
                    return self._read_object(reader, parent_type, source, field_details_list, path)
                if type(reader) is ResolverReader:
                    return self._call_resolver(
                        reader, parent_type, source, field_details_list, path
                    )
                if type(reader) is AsyncResolverReader and self._awaits:
                    return self._call_async(reader, parent_type, source, field_details_list, path)
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    # --- leaves --------------------------------------------------------------------------

    def _read_leaf(
        self,
        reader: LeafReader,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        try:
            if reader.attribute is None:
                result = reader.resolve(source, None)  # strawberry's: no info
            else:
                result = getattr(source, reader.attribute)  # what it does
        except Exception as raw_error:
            self.handle_field_error(raw_error, reader.field.type, field_details_list, path)
            return None
        return self._leaf_value(reader, parent_type, field_details_list, path, result)

    def _leaf_value(
        self,
        reader: LeafReader,
        parent_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path,
        result: Any,
    ) -> Any:
        """A leaf's value read: serialised, or completed by graphql-core (`_complete`)."""
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
        return self._complete(reader.field, parent_type, field_details_list, path, result)

    def _complete(
        self,
        field: GraphQLField,
        parent_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path,
        result: Any,
    ) -> AwaitableOrValue[Any]:
        """graphql-core's `execute_field` once the resolver has returned `result`: null,
        an error or anything the plan does not complete itself is completed (and refused)
        exactly as there."""
        info = self.build_resolve_info(field, to_nodes(field_details_list), parent_type, path)
        return self._completed(field.type, field_details_list, info, path, result)

    def _completed(
        self,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
    ) -> AwaitableOrValue[Any]:
        """The rest of graphql-core's `execute_field` for a resolved `result`."""
        try:
            if self.is_awaitable(result):
                return self.complete_awaitable_value(
                    return_type, field_details_list, info, path, result, None
                )
            completed = self.complete_value(
                return_type, field_details_list, info, path, result, None
            )
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        if self.is_awaitable(completed):
            return self._await_completed(completed, return_type, field_details_list, path)
        return completed

    async def _await_completed(
        self,
        completed: Awaitable[Any],
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        """graphql-core's `await_completed` (of `execute_field` and of a list's items)."""
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None

    def _call_resolver(
        self,
        reader: ResolverReader,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        """graphql-core's `execute_field` around strawberry's `_resolver`, without the
        layers that have nothing to do for this field (ResolverReader)."""
        field = reader.field
        return_type = field.type
        hoisted = reader.hoisted
        if hoisted is not None and id(hoisted) in self._granted:
            try:  # what the chain does on a grant, which needs no resolve info
                if reader.attribute is None:
                    result = reader.definition.get_result(source, info=None, args=[], kwargs={})
                else:
                    result = getattr(source, reader.attribute)  # what get_result does
            except Exception as raw_error:
                self.handle_field_error(raw_error, return_type, field_details_list, path)
                return None
            if type(result) is reader.same:
                return result
            if type(result) in reader.plain:
                coerced = _coerced(reader, result)
                if coerced is not None and coerced is not Undefined:
                    return coerced
            return self._complete(field, parent_type, field_details_list, path, result)
        info = self.build_resolve_info(field, to_nodes(field_details_list), parent_type, path)
        try:
            strawberry_info = reader.info_of(_raw_info=info)
            kwargs: dict[str, Any] = {}
            for name in reader.source_names:
                kwargs[name] = source
            if reader.info_name is not None:
                kwargs[reader.info_name] = strawberry_info
            if hoisted is not None and _grants(hoisted, source, strawberry_info):
                # The chain would take this same decision, then only read the field.
                self._granted.add(id(hoisted))
                result = reader.definition.get_result(
                    source, info=strawberry_info, args=[], kwargs={}
                )
            elif reader.chain:
                result = _chain(reader, source, strawberry_info, kwargs)
            else:
                if reader.info_requested:
                    kwargs["info"] = strawberry_info
                result = _get_result(reader, source, strawberry_info, kwargs)
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        if type(result) in reader.plain:  # a leaf's value, serialised as _leaf_value does
            coerced = _coerced(reader, result)
            if coerced is not None and coerced is not Undefined:
                return coerced
        target = reader.target
        if target is not None and self._is_plain_object(result):
            try:
                completed = self._complete_target(target, field_details_list, info, path, result)
            except Exception as raw_error:
                self.handle_field_error(raw_error, return_type, field_details_list, path)
                return None
            if self.is_awaitable(completed):
                return self._await_completed(completed, return_type, field_details_list, path)
            return completed
        return self._completed(return_type, field_details_list, info, path, result)

    def _is_plain_object(self, result: Any) -> bool:
        """Neither null, an error nor awaitable: what `complete_value` completes as its type
        says without a detour."""
        return (
            result is not None
            and result is not Undefined
            and not isinstance(result, Exception)
            and not self.is_awaitable(result)
        )

    def _complete_target(
        self,
        target: Any,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
    ) -> AwaitableOrValue[Any]:
        """graphql-core's `complete_value` of a nullable object or abstract type (the
        reader's `target`) for a value `_is_plain_object` accepts: the same call it ends in."""
        if isinstance(target, GraphQLObjectType):
            return self.complete_object_value(target, field_details_list, info, path, result, None)
        return self.complete_abstract_value(target, field_details_list, info, path, result, None)

    # --- asynchronous resolvers ----------------------------------------------------------

    def _call_async(
        self,
        reader: AsyncResolverReader,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        """graphql-core's `execute_field` of an asynchronous strawberry field: the
        arguments coerced now (an error is handled now, in the order graphql-core handles
        it), the rest when the answer is awaited (`_resolve_async`), as the coroutine of
        strawberry's `_async_resolver` runs then."""
        field = reader.field
        info = self.build_resolve_info(field, to_nodes(field_details_list), parent_type, path)
        first = field_details_list[0]
        try:
            raw_arguments = (
                get_argument_values(
                    field,
                    first.node,
                    self.variable_values,
                    first.fragment_variable_values,
                    self.hide_suggestions,
                )
                if field.args or first.node.arguments
                else {}
            )
        except Exception as raw_error:
            self.handle_field_error(raw_error, field.type, field_details_list, path)
            return None
        return self._resolve_async(reader, source, info, raw_arguments, field_details_list, path)

    async def _resolve_async(
        self,
        reader: AsyncResolverReader,
        source: Any,
        info: GraphQLResolveInfo[Any],
        raw_arguments: dict[str, Any],
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        """strawberry's `_async_resolver` (Info, `get_arguments`, the extension chain around
        `field.get_result`, the result awaited) and graphql-core's
        `complete_awaitable_value`, in one coroutine."""
        return_type = reader.field.type
        try:
            strawberry_info = reader.info_of(_raw_info=info)
            kwargs: dict[str, Any] = {}
            for name, python_name, convert in reader.arguments:
                if name in raw_arguments:
                    value = raw_arguments[name]
                    if convert is not None:
                        value = convert(value, info=strawberry_info, path=(name,))
                    kwargs[python_name] = value
            for name in reader.source_names:
                kwargs[name] = source
            if reader.info_name is not None:
                kwargs[reader.info_name] = strawberry_info
            if reader.chain:
                result = _chain_async(reader, source, strawberry_info, kwargs)
            else:  # `extension_resolver` without extensions: `get_result` alone
                if reader.info_requested:
                    kwargs["info"] = strawberry_info
                result = _get_result(reader, source, strawberry_info, kwargs)
            if inspect.isawaitable(result):  # strawberry's `await_maybe`
                result = await result
            if type(result) in reader.plain:  # a leaf's value, serialised as _leaf_value does
                coerced = _coerced(reader, result)
                if coerced is not None and coerced is not Undefined:
                    return coerced
            target = reader.target
            if target is not None and self._is_plain_object(result):
                completed = self._complete_target(target, field_details_list, info, path, result)
            else:
                completed = self.complete_value(
                    return_type, field_details_list, info, path, result, None
                )
            if self.is_awaitable(completed):
                completed = await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            completed = None
        return completed

    # --- objects and lists of objects ----------------------------------------------------

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        info: Any,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        plan = self._plan
        if plan is not None and position_context is None:
            check = plan.type_check(return_type)  # first, as graphql-core calls is_type_of
            if check is NO_CHECK or (callable(check) and check(result, None) is True):
                entries = self._entries_of(return_type, field_details_list)
                if entries is not None:
                    return self._execute_entries(return_type, result, path, entries)
        return super().complete_object_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def complete_abstract_value(
        self,
        return_type: GraphQLAbstractType,
        field_details_list: FieldDetailsList,
        info: Any,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        plan = self._plan
        if plan is not None and position_context is None:
            members = plan.union_members(return_type)
            if members is not None and getattr(result, TYPE_CAST_ATTRIBUTE, None) is None:
                definition = getattr(result, "__strawberry_definition__", None)
                member = members.get(id(definition)) if definition is not None else None
                if member is not None and member[0] is definition:
                    return self.complete_object_value(
                        member[1], field_details_list, info, path, result, position_context
                    )
        return super().complete_abstract_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _entries_of(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> list[Entry] | None:
        """The sub-fields of an object, as graphql-core collects them (its own memoised
        `collect_subfields`), each with its reader; None when they defer anything."""
        key = (object_type.name, id(field_details_list))
        cached = self._entries.get(key)
        if cached is not None and cached[0] is field_details_list:
            return cached[1]
        plan = self._plan
        entries: list[Entry] | None
        nodes: tuple[Any, ...] = ()
        if plan is not None and plan.is_static(self.operation, self.fragments):
            # The same for every request (`collects_statically`): collected once per plan.
            nodes = tuple(details.node for details in field_details_list)
            entries = plan.collected(object_type, nodes)
            if entries is not None:
                self._entries[key] = (field_details_list, entries)
                return entries
        grouped_field_set, new_defer_usages, _forbidden = self.collect_subfields(
            object_type, field_details_list
        )
        entries = None
        if not new_defer_usages and plan is not None:
            entries = []
            for response_name, group in grouped_field_set.items():
                reader = plan.reader(object_type, group[0].node)
                if type(reader) is ObjectReader and any(
                    details.node.directives for details in group
                ):
                    reader = None  # @stream, or anything else a directive may ask
                entries.append((response_name, group, reader))
            if nodes:
                plan.remember_collected(object_type, nodes, entries)
        self._entries[key] = (field_details_list, entries)
        return entries

    def _execute_entries(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        path: Path,
        entries: list[Entry],
    ) -> AwaitableOrValue[dict[str, Any]]:
        """graphql-core's `execute_fields`, the plan's readers called in place."""
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        type_name = parent_type.name
        try:
            for response_name, group, reader in entries:
                if reader is TYPENAME:
                    results[response_name] = type_name
                    continue
                if type(reader) is LeafReader:
                    try:
                        if reader.attribute is None:
                            value = reader.resolve(source, None)
                        else:
                            value = getattr(source, reader.attribute)
                    except Exception as raw_error:
                        field_path = Path(path, response_name, type_name)
                        self.handle_field_error(raw_error, reader.field.type, group, field_path)
                        results[response_name] = None
                        continue
                    kind = type(value)
                    if kind is reader.same:  # a str of a String or ID: serialised as is
                        results[response_name] = value
                        continue
                    if kind in reader.plain:  # not null, an error nor awaitable
                        try:
                            coerced = reader.coerce(value)
                        except Exception:
                            coerced = None
                        if coerced is not None and coerced is not Undefined:
                            results[response_name] = coerced
                            continue
                    field_path = Path(path, response_name, type_name)
                    value = self._leaf_value(reader, parent_type, group, field_path, value)
                    results[response_name] = value
                    if is_awaitable(value):
                        awaitable_fields.append(response_name)
                    continue
                field_path = Path(path, response_name, type_name)
                if type(reader) is ResolverReader:
                    result = self._call_resolver(reader, parent_type, source, group, field_path)
                elif type(reader) is AsyncResolverReader and self._awaits:
                    result = self._call_async(reader, parent_type, source, group, field_path)
                elif type(reader) is ObjectReader:
                    result = self._read_object(reader, parent_type, source, group, field_path)
                else:
                    result = _BASE.execute_field(self, parent_type, source, group, field_path, None)
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results
        return _gather_fields(results, awaitable_fields)

    def _read_object(
        self,
        reader: ObjectReader,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        """A basic field of an object type or of a list of one: read, then completed by
        the plan when graphql-core would complete the value without a detour (an object
        its type accepts; a `list` of them, none null, awaitable or an error), else by
        graphql-core (`_complete`)."""
        try:
            if reader.attribute is None:
                result = reader.resolve(source, None)
            else:
                result = getattr(source, reader.attribute)
        except Exception as raw_error:
            self.handle_field_error(raw_error, reader.field.type, field_details_list, path)
            return None
        plan = self._plan
        object_type = reader.object_type
        check = plan.type_check(object_type) if plan is not None else None
        entries = None
        if check is not None and self._completes(result, check, reader.item_type is not None):
            entries = self._entries_of(object_type, field_details_list)
        if entries is None:
            return self._complete(reader.field, parent_type, field_details_list, path, result)
        return_type = reader.field.type
        completed: Any
        try:
            if reader.item_type is None:
                completed = self._execute_entries(object_type, result, path, entries)
            else:
                completed = self._complete_items(
                    reader.item_type, object_type, field_details_list, path, result, entries
                )
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        if self.is_awaitable(completed):
            return self._await_completed(completed, return_type, field_details_list, path)
        return completed

    def _completes(self, result: Any, check: Any, is_list: bool) -> bool:
        """Whether the plan completes `result` exactly as graphql-core would: an object
        (not null, not an error, not awaitable) its type's check accepts, or a `list` of
        such objects."""
        is_awaitable = self.is_awaitable
        values: Any
        if not is_list:
            values = (result,)
        elif type(result) is list:
            values = result
        else:
            return False
        for value in values:
            if value is None or isinstance(value, Exception) or is_awaitable(value):
                return False
            if check is not NO_CHECK and check(value, None) is not True:
                return False
        return True

    def _complete_items(
        self,
        item_type: GraphQLOutputType,
        object_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path,
        items: list[Any],
        entries: list[Entry],
    ) -> AwaitableOrValue[list[Any]]:
        """graphql-core's `complete_iterable_value` and `complete_list_item_value` over a
        list of objects (none awaitable: `_completes`), each completed by the plan."""
        is_awaitable = self.is_awaitable
        completed_results: list[Any] = []
        append_completed = completed_results.append
        awaitable_indices: list[int] = []
        try:
            for index, item in enumerate(items):
                item_path = path.add_key(index, None)
                try:
                    completed = self._execute_entries(object_type, item, item_path, entries)
                except Exception as raw_error:
                    self.handle_field_error(raw_error, item_type, field_details_list, item_path)
                    completed = None
                else:
                    if is_awaitable(completed):
                        completed = self._await_completed(
                            completed, item_type, field_details_list, item_path
                        )
                        awaitable_indices.append(index)
                append_completed(completed)
        except Exception:
            if awaitable_indices:
                self.settle_in_background([completed_results[i] for i in awaitable_indices])
            raise
        if not awaitable_indices:
            return completed_results
        return _gather_items(completed_results, awaitable_indices)


def _coerced(reader: ResolverReader | AsyncResolverReader, value: Any) -> Any:
    """A leaf value serialised, or None when graphql-core's completion is to say why not."""
    coerce = reader.coerce
    if coerce is None:
        return None
    try:
        return coerce(value)
    except Exception:
        return None


def _chain_async(
    reader: AsyncResolverReader, source: Any, info: Any, kwargs: dict[str, Any]
) -> Any:
    """strawberry's `extension_resolver` once its arguments are converted: the field's
    extension functions chained around `field.get_result` as it chains them, a
    PermissionExtension's `resolve_async` run by `_permitted`."""
    requested = reader.info_requested

    def wrapped_get_result(_source: Any, info: Any, **kwargs: Any) -> Any:
        if requested:
            kwargs["info"] = info
        return _get_result(reader, _source, info, kwargs, source)

    resolve: Callable[..., Any] = wrapped_get_result
    for step in reader.chain:
        if isinstance(step, PermissionExtension):
            resolve = partial(_permitted, step, resolve)
        else:
            resolve = partial(step, resolve)
    return resolve(source, info, **kwargs)


async def _permitted(
    extension: PermissionExtension,
    next_: Callable[..., Any],
    source: Any,
    info: Any,
    **kwargs: Any,
) -> Any:
    """strawberry's `PermissionExtension.resolve_async`, step for step (the same
    `has_permission` calls in the same order, the same refusal), without a coroutine per
    decision (its `await_maybe`)."""
    for permission in extension.permissions:
        has_permission = permission.has_permission(source, info, **kwargs)
        if inspect.isawaitable(has_permission):
            has_permission = await has_permission
        if not isinstance(has_permission, bool):
            if inspect.iscoroutine(has_permission):
                has_permission.close()
            raise PermissionReturnedNonBooleanError(permission, has_permission)
        if not has_permission:
            return extension._on_unauthorized(permission)
    following = next_(source, info, **kwargs)
    if inspect.isasyncgen(following):
        return following
    return await following


def _grants(extension: PermissionExtension, source: Any, info: Any) -> bool:
    """Whether strawberry's `PermissionExtension.resolve` would grant the field: each
    permission's `has_permission` is exactly True (anything else, an exception included,
    is for the chain to deal with, as strawberry does, and raises the same here)."""
    for permission in extension.permissions:
        decision = permission.has_permission(source, info)
        if decision is not True:
            if inspect.iscoroutine(decision):
                decision.close()  # the chain asks again, and refuses it as strawberry does
            return False
    return True


def _get_result(
    reader: ResolverReader | AsyncResolverReader,
    source: Any,
    info: Any,
    kwargs: dict[str, Any],
    field_source: Any = Undefined,
) -> Any:
    """strawberry's `field.get_result(source, info, args, kwargs)`, args holding the
    field's source (`field_source`, unless given `source`: an extension may pass another
    `source` along, not other args) where the resolver takes `self`: the resolver's own
    function where that is all `get_result` does."""
    if field_source is Undefined:
        field_source = source
    function = reader.function
    if function is None:
        args = [field_source] if reader.self_parameter else []
        return reader.definition.get_result(source, info=info, args=args, kwargs=kwargs)
    if reader.self_parameter:
        return function(field_source, **kwargs)
    return function(**kwargs)


def _chain(reader: ResolverReader, source: Any, info: Any, kwargs: dict[str, Any]) -> Any:
    """strawberry's `extension_resolver` once its arguments are known (none converted):
    the field's extension functions chained around `field.get_result`, as it chains them."""
    requested = reader.info_requested

    def wrapped_get_result(_source: Any, info: Any, **kwargs: Any) -> Any:
        if requested:
            kwargs["info"] = info
        return _get_result(reader, _source, info, kwargs, source)

    resolve: Callable[..., Any] = wrapped_get_result
    for function in reader.chain:
        resolve = partial(function, resolve)
    return resolve(source, info, **kwargs)


async def _gather_fields(results: dict[str, Any], awaitable_fields: list[str]) -> dict[str, Any]:
    """graphql-core's `get_results` of `execute_fields`."""
    if len(awaitable_fields) == 1:
        field = awaitable_fields[0]
        results[field] = await results[field]
    else:
        awaited = await gather_with_cancel(*(results[field] for field in awaitable_fields))
        results.update(zip(awaitable_fields, awaited, strict=True))
    return results


async def _gather_items(completed: list[Any], awaitable_indices: list[int]) -> list[Any]:
    """graphql-core's `get_completed_results` of `complete_iterable_value`."""
    if len(awaitable_indices) == 1:
        index = awaitable_indices[0]
        completed[index] = await completed[index]
    else:
        awaited = await gather_with_cancel(*(completed[index] for index in awaitable_indices))
        for index, value in zip(awaitable_indices, awaited, strict=True):
            completed[index] = value
    return completed
