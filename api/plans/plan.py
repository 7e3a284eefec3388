"""Plans and their cache: which fields of a document are read without graphql-core's
per-field dispatch (api/plans/__init__.py says when that is exact)."""

from __future__ import annotations

import hashlib
import operator
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from functools import partial
from typing import Any, cast

from graphql import (
    FieldNode,
    GraphQLAbstractType,
    GraphQLEnumType,
    GraphQLField,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    OperationDefinitionNode,
    SelectionSetNode,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    print_schema,
)
from graphql.pyutils import is_awaitable
from graphql.type.scalars import serialize_id, serialize_string
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import PermissionExtension
from strawberry.relay.types import GlobalID
from strawberry.types.arguments import StrawberryArgument, _is_leaf_type
from strawberry.types.base import StrawberryMaybe, StrawberryObjectDefinition, StrawberryOptional
from strawberry.types.enum import has_enum_definition
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import StrawberryResolver

from api.plans.arguments import conversion

PLAN_ENTRIES = 1024  # documents whose plans are kept, least recently used out first
PLAN_FIELDS = 4096  # (field node, object type) decisions kept per document, at most

# strawberry's resolver of a field without resolver, extensions or exception handlers
# (strawberry/schema/schema_converter.py, `from_resolver`): `field.get_result(source)`,
# its info ignored.
_BASIC_RESOLVER = "_get_basic_result"


class TypeName:
    """The reader of `__typename`: the name of the object type the field is read on."""


TYPENAME = TypeName()


def output_coercer(leaf: GraphQLLeafType) -> Callable[[Any], Any]:
    """The leaf type's `coerce_output_value`; for a strawberry enum, its answers for the
    enum's members taken once (they are fixed, and it scans the enum's values for each),
    the type's own function for any other value."""
    coerce = leaf.coerce_output_value
    definition = (leaf.extensions or {}).get("strawberry-definition")
    enum = getattr(definition, "wrapped_cls", None)
    if not isinstance(leaf, GraphQLEnumType) or not (
        isinstance(enum, type) and issubclass(enum, Enum)
    ):
        return coerce
    names: dict[Any, Any] = {}
    for member in enum:
        try:
            names[member] = coerce(member)
        except Exception:  # noqa: S112 - that member keeps the type's own path
            continue

    def coerce_enum(value: Any) -> Any:
        if type(value) is enum and value in names:  # a member: looked up by identity
            return names[value]
        return coerce(value)

    return coerce_enum


def _same_output(leaf: GraphQLLeafType) -> type | None:
    """`str` for String and ID, whose serialisers hand a `str` back unchanged."""
    if leaf.coerce_output_value in (serialize_string, serialize_id):
        return str
    return None


@dataclass(frozen=True, slots=True)
class LeafReader:
    """A basic field of a scalar or enum type: strawberry's own resolver of it, its
    graphql-core definition (for the fallback) and its leaf type's serialiser."""

    resolve: Callable[..., Any]
    field: GraphQLField
    coerce: Callable[[Any], Any]
    attribute: str | None  # read with getattr: what strawberry's default resolver does
    plain: frozenset[type] = frozenset()  # types of values neither null, errors nor awaitable
    same: type | None = None  # the type of values its serialiser hands back as they are


# Values of these types are serialised on the plan's tight loop (api/plans/executor.py);
# any other (None, an error, an awaitable, anything else) takes the careful path.
PLAIN: frozenset[type] = frozenset({str, int, float, bool, date, datetime})


def _plain_types(leaf: GraphQLLeafType) -> frozenset[type]:
    """PLAIN, and for a strawberry enum its Python enum when none of its members is an
    error or awaitable (they are fixed: decided once)."""
    definition = (leaf.extensions or {}).get("strawberry-definition")
    enum = getattr(definition, "wrapped_cls", None)
    if (
        isinstance(leaf, GraphQLEnumType)
        and isinstance(enum, type)
        and issubclass(enum, Enum)
        and not issubclass(enum, BaseException)
        and enum not in PLAIN
        and not any(is_awaitable(member) for member in enum)
    ):
        return PLAIN | {enum}
    return PLAIN


@dataclass(frozen=True, slots=True)
class ObjectReader:
    """A basic field whose type is an object type or a list of one (each level possibly
    non-null): read as a LeafReader is, then completed by the plan (api/plans/executor.py)
    when the value is what graphql-core would complete without a detour (a dict of the
    sub-selection for an object, a `list` of such objects for a list)."""

    resolve: Callable[..., Any]
    field: GraphQLField
    attribute: str | None
    object_type: GraphQLObjectType  # the named object type
    item_type: GraphQLOutputType | None  # a list's item type (with its non-null), or None


@dataclass(frozen=True, slots=True)
class ResolverReader:
    """A field strawberry resolves through its wrapper (`from_resolver`'s synchronous
    `_resolver`), without arguments, exception handlers or extensions that reshape
    arguments: the wrapper would build the Info (its own `_strawberry_info_from_graphql`,
    called here too), convert no argument, and call the field's extension chain (its own
    functions, a permission's `resolve` among them, taken from the wrapper) around
    `field.get_result` with the source and the Info where the resolver asks for them, as
    the plan does (api/plans/executor.py, `_call_resolver`). graphql-core completes the
    value."""

    field: GraphQLField
    definition: StrawberryField
    info_of: partial[Any]  # strawberry's own Info of a resolve info (`_info_of`)
    chain: tuple[Callable[..., Any], ...]  # the field extensions' resolvers, outermost last
    self_parameter: bool
    source_names: tuple[str, ...]  # the resolver's root / parent parameters
    info_name: str | None  # the resolver's info parameter, but one named `info`
    info_requested: bool  # it is named `info` (strawberry passes it back last)
    function: Callable[..., Any] | None  # what `get_result` calls (`resolver_function`)
    # A leaf type's serialiser and the types of values it takes on the plan's tight loop
    # (as LeafReader's), for a field of a scalar or enum type; None otherwise.
    coerce: Callable[[Any], Any] | None = None
    plain: frozenset[type] = frozenset()
    # The field's only extension when it is a permission decided by the operation alone
    # (`decided_by_operation`) around a resolver-less field: see `hoisted_permission`.
    hoisted: PermissionExtension | None = None
    # The hoisted field's attribute, when strawberry's `get_result` is `getattr` of it.
    attribute: str | None = None
    same: type | None = None  # as LeafReader's
    # The named type of a nullable object or abstract type (see `completion_target`).
    target: GraphQLObjectType | GraphQLAbstractType | None = None


# An argument as strawberry's `convert_arguments` takes it: its GraphQL name (the key in
# graphql-core's coerced arguments), its Python name, and its conversion, or None where
# strawberry's `convert_argument` hands the value back unchanged (`argument_conversion`).
Argument = tuple[str, str, Callable[..., Any] | None]


@dataclass(frozen=True, slots=True)
class AsyncResolverReader:
    """An asynchronous field strawberry resolves through its `_async_resolver`, with or
    without arguments, without exception handlers or extensions that reshape arguments.
    graphql-core would coerce the arguments (`get_argument_values`, here too, as eagerly),
    then await the wrapper: strawberry's Info (its own `_strawberry_info_from_graphql`),
    the arguments converted (`convert_arguments`: each argument's conversion decided once
    here), the extension chain (its own functions, but a PermissionExtension's
    `resolve_async`, which the plan runs itself with the same calls, decisions and
    refusals: api/plans/executor.py, `_permitted`) around `field.get_result`, the result
    awaited and completed, every error handled on the field's path."""

    field: GraphQLField
    definition: StrawberryField
    info_of: partial[Any]
    chain: tuple[Callable[..., Any] | PermissionExtension, ...]  # outermost last
    arguments: tuple[Argument, ...]
    self_parameter: bool
    source_names: tuple[str, ...]
    info_name: str | None
    info_requested: bool
    function: Callable[..., Any] | None
    coerce: Callable[[Any], Any] | None = None
    plain: frozenset[type] = frozenset()
    target: GraphQLObjectType | GraphQLAbstractType | None = None  # `completion_target`


def completion_target(field: GraphQLField) -> GraphQLObjectType | GraphQLAbstractType | None:
    """The field's type when it is a nullable object, interface or union type: graphql-core's
    `complete_value` then hands any value that is not null, an error or awaitable straight to
    `complete_object_value` or `complete_abstract_value`, as the plan does."""
    field_type = field.type
    if is_object_type(field_type) or is_abstract_type(field_type):
        target: GraphQLObjectType | GraphQLAbstractType = field_type
        return target
    return None


Reader = LeafReader | ObjectReader | ResolverReader | AsyncResolverReader | TypeName

_RESOLVER = "GraphQLCoreConverter.from_resolver.<locals>._resolver"
_ASYNC_RESOLVER = "GraphQLCoreConverter.from_resolver.<locals>._async_resolver"


def argument_conversion(argument: StrawberryArgument, converter: Any) -> Callable[..., Any] | None:
    """How strawberry's `convert_argument` treats an argument, decided from its type: None
    when it hands any value back unchanged (a scalar but GlobalID, an enum, optional or
    not: graphql-core has already coerced the value), its conversion decided once for the
    type otherwise (api/plans/arguments.py)."""
    type_: Any = argument.type
    while isinstance(type_, StrawberryOptional):
        if isinstance(type_, StrawberryMaybe):
            break  # wrapped in `Some`: strawberry converts it
        type_ = type_.of_type
    registry = converter.scalar_registry
    if type_ is not GlobalID and (
        (not isinstance(type_, StrawberryMaybe) and _is_leaf_type(type_, registry))
        or (isinstance(type_, type) and has_enum_definition(type_))
    ):
        return None
    return conversion(argument.type, registry, converter.config)


def _wrapped_field(
    field: GraphQLField, qualname: str
) -> tuple[dict[str, Any], partial[Any], StrawberryField] | None:
    """The closure of strawberry's resolver wrapper `qualname` on `field`, its Info builder
    and the StrawberryField it was built for; None if `field.resolve` is not that wrapper
    built for this very field."""
    resolve = field.resolve
    if (
        resolve is None
        or getattr(resolve, "__qualname__", None) != qualname
        or getattr(resolve, "__module__", None) != "strawberry.schema.schema_converter"
    ):
        return None
    cells = _closure(resolve)
    info_of = _info_of(cells.get("_strawberry_info_from_graphql"))
    if info_of is None:
        return None
    found = info_of.keywords["_field"]  # the field the wrapper was built for
    if (field.extensions or {}).get("strawberry-definition") is not found:
        return None  # not that field's wrapper
    if not isinstance(found, StrawberryField):
        return None
    return cells, info_of, found


def async_resolver_reader(field: GraphQLField) -> AsyncResolverReader | None:
    """The AsyncResolverReader of a field, or None (graphql-core executes it)."""
    wrapped = _wrapped_field(field, _ASYNC_RESOLVER)
    if wrapped is None:
        return None
    cells, info_of, definition = wrapped
    extension_resolver = cells.get("_get_result_with_extensions") or _closure
    outer = _closure(extension_resolver)
    chain = outer.get("extension_functions")
    converter = outer.get("self")
    if (
        cells.get("field_exception_handlers")
        or "field_exception_handlers" not in cells
        or not definition.is_async
        or converter is None
        or not isinstance(chain, list)
        or not all(callable(function) for function in chain)
        or any(
            type(extension).map_arguments is not FieldExtension.map_arguments
            for extension in definition.extensions
        )
    ):
        return None
    arguments: list[Argument] = []
    for argument in definition.arguments:
        if not argument.python_name:
            return None
        name = converter.config.name_converter.from_argument(argument)
        arguments.append((name, argument.python_name, argument_conversion(argument, converter)))
    steps: list[Callable[..., Any] | PermissionExtension] = []
    for function in chain:
        extension = getattr(function, "__self__", None)
        if (
            type(extension) is PermissionExtension
            and getattr(function, "__func__", None) is PermissionExtension.resolve_async
        ):
            steps.append(extension)  # the plan runs it (executor.py, `_permitted`)
        else:
            steps.append(function)
    return AsyncResolverReader(
        field=field,
        definition=definition,
        info_of=info_of,
        chain=tuple(steps),
        arguments=tuple(arguments),
        **_resolver_shape(definition, field),
        target=completion_target(field),
    )


def _leaf(field: GraphQLField) -> GraphQLLeafType | None:
    named = field.type.of_type if is_non_null_type(field.type) else field.type
    return named if is_leaf_type(named) else None


def _resolver_shape(definition: StrawberryField, field: GraphQLField) -> dict[str, Any]:
    """What both resolver readers know of a resolver's signature and output type."""
    base = definition.base_resolver
    source_names: tuple[str, ...] = ()
    info_name = None
    if base is not None:
        source_names = tuple(
            parameter.name
            for parameter in (base.parent_parameter, base.root_parameter)
            if parameter is not None
        )
        info = base.info_parameter
        info_name = info.name if info is not None else None
    leaf = _leaf(field)
    return {
        "self_parameter": base is not None and base.self_parameter is not None,
        "source_names": source_names,
        "info_name": None if info_name == "info" else info_name,
        "info_requested": info_name == "info",
        "function": resolver_function(definition),
        "coerce": output_coercer(leaf) if leaf is not None else None,
        "plain": _plain_types(leaf) if leaf is not None else frozenset(),
    }


def _closure(function: Callable[..., Any]) -> dict[str, Any]:
    code = getattr(function, "__code__", None)
    cells = getattr(function, "__closure__", None) or ()
    if code is None:
        return {}
    try:
        return {
            name: cell.cell_contents for name, cell in zip(code.co_freevars, cells, strict=True)
        }
    except ValueError:  # an empty cell, or not one per free variable
        return {}


_INFO_OF = "GraphQLCoreConverter.from_resolver.<locals>._strawberry_info_from_graphql"


def _info_of(function: Any) -> partial[Any] | None:
    """strawberry's `_strawberry_info_from_graphql` (`config.info_class(_raw_info=info,
    _field=field)`), its config's class and its field taken once: call it with
    `_raw_info=`. None when the function is not that one."""
    if getattr(function, "__qualname__", None) != _INFO_OF:
        return None
    cells = _closure(function)
    info_class = getattr(getattr(cells.get("self"), "config", None), "info_class", None)
    if not callable(info_class) or "field" not in cells:
        return None
    return partial(info_class, _field=cells["field"])


def resolver_function(definition: StrawberryField) -> Callable[..., Any] | None:
    """The function strawberry's `field.get_result` ends in for a field with a resolver
    (`base_resolver(*args, **kwargs)`, which calls its `wrapped_func`), or None where
    either is not strawberry's own."""
    base = definition.base_resolver
    if (
        base is None
        or type(definition).get_result is not StrawberryField.get_result
        or type(base).__call__ is not StrawberryResolver.__call__
        or not callable(base.wrapped_func)
    ):
        return None
    function: Callable[..., Any] = base.wrapped_func
    return function


def resolver_reader(field: GraphQLField) -> ResolverReader | None:
    """The ResolverReader of a field, or None (api/plans/__init__.py says when)."""
    if field.args:
        return None
    wrapped = _wrapped_field(field, _RESOLVER)
    if wrapped is None:
        return None
    cells, info_of, definition = wrapped
    chain = _closure(cells.get("_get_result_with_extensions") or _closure).get(
        "extension_functions"
    )
    if (
        cells.get("field_exception_handlers")
        or "field_exception_handlers" not in cells
        or definition.arguments
        or definition.is_async
        or not isinstance(chain, list)
        or not all(callable(function) for function in chain)
        or any(
            type(extension).map_arguments is not FieldExtension.map_arguments
            for extension in definition.extensions
        )
    ):
        return None
    hoisted = hoisted_permission(definition, chain)
    return ResolverReader(
        field=field,
        definition=definition,
        info_of=info_of,
        chain=tuple(chain),
        **_resolver_shape(definition, field),
        hoisted=hoisted,
        attribute=definition.python_name
        if hoisted is not None and definition.default_resolver is getattr
        else None,
        same=_same_output(leaf) if (leaf := _leaf(field)) is not None else None,
        target=completion_target(field),
    )


def hoisted_permission(
    definition: StrawberryField, chain: list[Callable[..., Any]]
) -> PermissionExtension | None:
    """The permission of a field whose one extension is a PermissionExtension all of whose
    permissions say their decision is the operation's alone (`decided_by_operation`: the
    same for every object the field is read on), around a field without resolver (read by
    strawberry's `get_result`, which then ignores its info). Its extension function is
    then `resolve`: each `has_permission` in turn, and on a grant `get_result` alone. The
    plan takes that decision once per operation: granted, the field is read as a
    LeafReader is, without a resolve info; refused (or anything but a grant), the chain
    runs as strawberry runs it."""
    extensions = definition.extensions
    if len(extensions) != 1 or len(chain) != 1:
        return None
    extension = extensions[0]
    function = chain[0]
    if not isinstance(extension, PermissionExtension):
        return None
    if (
        type(extension) is not PermissionExtension  # not a subclass: its `resolve` is this
        or getattr(function, "__func__", None) is not PermissionExtension.resolve
        or getattr(function, "__self__", None) is not extension
        or not extension.permissions
        or not all(
            getattr(permission, "decided_by_operation", False) is True
            for permission in extension.permissions
        )
        or definition.base_resolver is not None
        or type(definition).get_result is not StrawberryField.get_result
    ):
        return None
    hoisted: PermissionExtension = extension
    return hoisted


# Strawberry's `is_type_of` of an object type implementing interfaces
# (strawberry/schema/schema_converter.py, `_get_is_type_of`): it ignores its info.
_STRAWBERRY_IS_TYPE_OF = "_get_is_type_of.<locals>.is_type_of"


class NoCheck:
    """An object type without `is_type_of`: graphql-core completes any value as it."""


NO_CHECK = NoCheck()


def type_check(object_type: GraphQLObjectType) -> Callable[[Any, Any], Any] | NoCheck | None:
    """How the plan tests a value for `object_type` without a resolve info: NO_CHECK, the
    type's own `is_type_of` when it is strawberry's (which ignores its info), or None
    (another predicate: graphql-core completes the value)."""
    is_type_of = object_type.is_type_of
    if is_type_of is None:
        return NO_CHECK
    if (
        getattr(is_type_of, "__qualname__", "").endswith(_STRAWBERRY_IS_TYPE_OF)
        and getattr(is_type_of, "__module__", None) == "strawberry.schema.schema_converter"
    ):
        return is_type_of
    return None


Members = dict[int, tuple[Any, GraphQLObjectType]]

_UNION_RESOLVER = "StrawberryUnion.get_type_resolver.<locals>._resolve_union_type"


def union_members(schema: GraphQLSchema, abstract_type: Any) -> Members | None:
    """For a strawberry union none of whose members is generic: its members by (the id
    of) their strawberry definition. strawberry's `_resolve_union_type` answers, for a
    value not cast (`strawberry.cast`) whose `__strawberry_definition__` is one of those,
    that member's name (`is_implemented_by`: "exact type match"), which graphql-core then
    finds valid; anything else is resolved by them."""
    if not isinstance(abstract_type, GraphQLUnionType):
        return None
    resolve_type = abstract_type.resolve_type
    if (
        getattr(resolve_type, "__qualname__", None) != _UNION_RESOLVER
        or getattr(resolve_type, "__module__", None) != "strawberry.types.union"
    ):
        return None
    members: Members = {}
    for member in abstract_type.types:
        definition = (member.extensions or {}).get("strawberry-definition")
        if (
            not isinstance(definition, StrawberryObjectDefinition)
            or definition.concrete_of is not None
            or definition.is_graphql_generic
            or schema.get_type(member.name) is not member
        ):
            return None
        members[id(definition)] = (definition, cast("GraphQLObjectType", member))
    return members


def leaf_reader(parent_type: GraphQLObjectType, field_name: str) -> Reader | None:
    """The reader of a field of an object type, or None: graphql-core executes it."""
    if field_name == "__typename":
        return TYPENAME
    field = parent_type.fields.get(field_name)
    if field is None:
        return None
    resolve = field.resolve
    if resolve is not None and getattr(resolve, "__name__", None) == "_async_resolver":
        return async_resolver_reader(field)
    if field.args:
        return None
    if resolve is not None and getattr(resolve, "__name__", None) == "_resolver":
        return resolver_reader(field)
    if (
        resolve is None
        or getattr(resolve, "__name__", None) != _BASIC_RESOLVER
        or getattr(resolve, "_is_default", None) is not True
    ):
        return None
    definition = (field.extensions or {}).get("strawberry-definition")
    if definition is None or not getattr(definition, "is_basic_field", False):
        return None
    attribute = None
    if (
        type(definition).get_result is StrawberryField.get_result
        and definition.default_resolver is getattr
        and definition.base_resolver is None
    ):
        attribute = definition.python_name
    named = field.type.of_type if is_non_null_type(field.type) else field.type
    if is_list_type(named):
        item_type = named.of_type
        item = item_type.of_type if is_non_null_type(item_type) else item_type
        if is_object_type(item):
            return ObjectReader(resolve, field, attribute, item, item_type)
        return None
    if is_object_type(named):
        return ObjectReader(resolve, field, attribute, named, None)
    if not is_leaf_type(named):
        return None
    leaf: GraphQLLeafType = named
    return LeafReader(
        resolve=resolve,
        field=field,
        coerce=output_coercer(leaf),
        attribute=attribute,
        plain=_plain_types(leaf),
        same=_same_output(leaf),
    )


_FINGERPRINTS: weakref.WeakKeyDictionary[GraphQLSchema, str] = weakref.WeakKeyDictionary()


def schema_fingerprint(schema: GraphQLSchema) -> str:
    """The SHA-256 of the schema's SDL and of which of its fields a plan may read: a schema
    changed by a deployment has another one, be it only a resolver or a permission added
    to a field (the SDL alone would not show that)."""
    fingerprint = _FINGERPRINTS.get(schema)
    if fingerprint is None:
        digest = hashlib.sha256(print_schema(schema).encode())
        for name, named_type in sorted(schema.type_map.items()):
            if isinstance(named_type, GraphQLObjectType):
                for field_name in named_type.fields:
                    reader = leaf_reader(named_type, field_name)
                    kind = type(reader).__name__ if reader else "-"
                    if isinstance(reader, ResolverReader) and reader.hoisted is not None:
                        kind += ":hoisted"
                    digest.update(f"\n{name}.{field_name}:{kind}".encode())
                check = type(type_check(named_type)).__name__
                digest.update(f"\n{name}:is_type_of:{check}".encode())
        fingerprint = digest.hexdigest()
        _FINGERPRINTS[schema] = fingerprint
    return fingerprint


class DocumentPlan:
    """The readers of one document's fields, decided on first use per (field node, object
    type) and kept with the document. A decision is keyed by the node's identity and kept
    with the node itself, so that it is never taken for another node at a reused address."""

    __slots__ = (
        "_checks",
        "_collected",
        "_readers",
        "_static",
        "_unions",
        "fingerprint",
        "operation",
        "schema",
        "sha256",
    )

    def __init__(
        self,
        schema: GraphQLSchema,
        fingerprint: str,
        sha256: str,
        operation: OperationDefinitionNode,
    ) -> None:
        self.schema = schema
        self.fingerprint = fingerprint
        self.sha256 = sha256
        self.operation = operation
        self._readers: dict[tuple[int, str], tuple[Any, Reader | None]] = {}
        self._checks: dict[str, Callable[[Any, Any], Any] | NoCheck | None] = {}
        self._unions: dict[str, Members | None] = {}
        # Per operation of the document (by id, the node kept): whether its collection of
        # fields depends on the document alone (`collects_statically`).
        self._static: dict[int, tuple[OperationDefinitionNode, bool]] = {}
        # A static operation's collected sub-fields with their readers, by (object type,
        # ids of the field group's nodes): the nodes kept, to tell a reused id apart.
        self._collected: dict[tuple[str, tuple[int, ...]], tuple[tuple[Any, ...], Any]] = {}

    def is_static(self, operation: OperationDefinitionNode, fragments: dict[str, Any]) -> bool:
        """`collects_statically` of an operation of the document, decided once."""
        known = self._static.get(id(operation))
        if known is not None and known[0] is operation:
            return known[1]
        static = collects_statically(operation, fragments)
        self._static[id(operation)] = (operation, static)
        return static

    def collected(self, object_type: GraphQLObjectType, nodes: tuple[Any, ...]) -> Any:
        """The entries `remember_collected` kept for these nodes on this type, or None."""
        entry = self._collected.get((object_type.name, tuple(map(id, nodes))))
        # Equal keys are id tuples of the same length: the nodes are compared one by one.
        if entry is not None and all(map(operator.is_, entry[0], nodes)):
            return entry[1]
        return None

    def remember_collected(
        self, object_type: GraphQLObjectType, nodes: tuple[Any, ...], entries: Any
    ) -> None:
        if len(self._collected) < PLAN_FIELDS:
            self._collected[(object_type.name, tuple(map(id, nodes)))] = (nodes, entries)

    def reader(self, parent_type: GraphQLObjectType, node: Any) -> Reader | None:
        key = (id(node), parent_type.name)
        entry = self._readers.get(key)
        if entry is not None and entry[0] is node:  # the node itself, not a reused id
            return entry[1]
        reader = leaf_reader(parent_type, node.name.value)
        if len(self._readers) < PLAN_FIELDS:
            self._readers[key] = (node, reader)
        return reader

    def type_check(
        self, object_type: GraphQLObjectType
    ) -> Callable[[Any, Any], Any] | NoCheck | None:
        """`type_check` of an object type, decided once per plan."""
        name = object_type.name
        try:
            return self._checks[name]
        except KeyError:
            check = self._checks[name] = type_check(object_type)
            return check

    def union_members(self, abstract_type: Any) -> Members | None:
        """`union_members` of an abstract type, decided once per plan."""
        name = abstract_type.name
        try:
            return self._unions[name]
        except KeyError:
            members = self._unions[name] = union_members(self.schema, abstract_type)
            return members

    def __len__(self) -> int:
        return len(self._readers)


def collects_statically(operation: OperationDefinitionNode, fragments: dict[str, Any]) -> bool:
    """Whether graphql-core's `collect_subfields` answers the same for every request of
    this operation: no directive anywhere in its selections or its document's fragments
    (no @skip/@include/@defer whose arguments are variables), no fragment arguments or
    variables. Its answer then depends on the schema, the document and the object type
    alone, and the field groups it builds hold no request's values (their `defer_usage`
    and `fragment_variable_values` are None)."""
    if operation.directives:
        return False
    selection_sets: list[SelectionSetNode | None] = [operation.selection_set]
    for details in fragments.values():
        definition = getattr(details, "definition", None)
        if (
            definition is None
            or getattr(details, "variable_signatures", None)
            or getattr(definition, "variable_definitions", None)
            or definition.directives
        ):
            return False
        selection_sets.append(definition.selection_set)
    while selection_sets:
        selection_set = selection_sets.pop()
        if selection_set is None:
            continue
        for selection in selection_set.selections:
            if selection.directives:
                return False
            if not isinstance(selection, FieldNode) and getattr(selection, "arguments", None):
                return False  # a fragment spread's arguments
            selection_sets.append(getattr(selection, "selection_set", None))
    return True


def document_text(operation: OperationDefinitionNode) -> str | None:
    """The full text of the document an operation was parsed from (None without locations)."""
    loc = operation.loc
    return loc.source.body if loc is not None else None


Key = tuple[str, str]  # the schema's fingerprint, the SHA-256 of the document's text


class PlanCache:
    """Plans by (schema fingerprint, SHA-256 of the document's full text), least recently
    used out first. A plan is reused only for the very schema object and parsed document it
    was built for (strawberry's ParserCache gives the same parse to the same text); a
    different one under the same key (a re-parse, a rebuilt schema) replaces it."""

    def __init__(self, max_entries: int = PLAN_ENTRIES) -> None:
        self.max_entries = max_entries
        self._plans: OrderedDict[tuple[str, str], DocumentPlan] = OrderedDict()
        # The key last found for an operation node (by its id, the node and schema kept to
        # tell a reused id apart): a parse served again (strawberry's ParserCache) finds its
        # plan without hashing its text and the schema's fingerprint again.
        self._keys: OrderedDict[int, tuple[OperationDefinitionNode, GraphQLSchema, Key]] = (
            OrderedDict()
        )
        self.built = 0  # plans built, for tests and the benchmark

    def __len__(self) -> int:
        return len(self._plans)

    def clear(self) -> None:
        self._plans.clear()
        self._keys.clear()

    def plan_for(
        self, schema: GraphQLSchema, operation: OperationDefinitionNode
    ) -> DocumentPlan | None:
        known = self._keys.get(id(operation))
        if known is not None and known[0] is operation and known[1] is schema:
            plan = self._plans.get(known[2])
            if plan is not None and plan.schema is schema and _same_document(plan, operation):
                self._plans.move_to_end(known[2])
                return plan
        text = document_text(operation)
        if text is None:
            return None
        fingerprint = schema_fingerprint(schema)
        key = (fingerprint, hashlib.sha256(text.encode()).hexdigest())
        self._keys[id(operation)] = (operation, schema, key)
        self._keys.move_to_end(id(operation))
        while len(self._keys) > self.max_entries:
            self._keys.popitem(last=False)
        plan = self._plans.get(key)
        if plan is not None and plan.schema is schema and _same_document(plan, operation):
            self._plans.move_to_end(key)
            return plan
        plan = DocumentPlan(schema, fingerprint, key[1], operation)
        self.built += 1
        self._plans[key] = plan
        self._plans.move_to_end(key)
        while len(self._plans) > self.max_entries:
            self._plans.popitem(last=False)
        return plan


def _same_document(plan: DocumentPlan, operation: OperationDefinitionNode) -> bool:
    """Whether `operation` belongs to the parsed document the plan was built on (the
    document may hold several operations: any of them shares its nodes' identities)."""
    if plan.operation is operation:
        return True
    mine, theirs = plan.operation.loc, operation.loc
    return mine is not None and theirs is not None and mine.source is theirs.source


PLANS = PlanCache()
