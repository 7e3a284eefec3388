"""Arguments converted as strawberry's `convert_argument` converts them, decided once per
type rather than for every value.

`convert_argument` walks an argument's type for every request: it resolves each field's
annotation of an input type (`StrawberryField.resolve_type`), asks the name converter for
each field's GraphQL name and tests each type for what kind it is, all to reach the same
decisions every time. Here those decisions are taken when a plan is built, for the types
whose conversion is plain (input types built by their constructor, lists, scalars and
enums, optional or not); any other type (`Maybe`, a `GlobalID`, an input type with its own
`from_input`) keeps strawberry's own conversion whole. tests/test_plan_arguments.py
compares both on every argument of the schema."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from functools import partial
from typing import Any

from strawberry.relay import GlobalID
from strawberry.types.arguments import _is_leaf_type, _is_optional_leaf_type, convert_argument
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    has_object_definition,
)
from strawberry.types.enum import has_enum_definition
from strawberry.types.lazy_type import LazyType
from strawberry.types.unset import UNSET

Conversion = Callable[..., Any]  # (value, *, info=..., path=...) -> the Python value


class _Strawberrys(Exception):
    """A type whose conversion is left to strawberry."""


def conversion(type_: Any, scalar_registry: Mapping[object, Any], config: Any) -> Conversion | None:
    """`convert_argument` bound to `type_`, decided once where the type allows it; None
    where it hands every value back unchanged."""
    registry = scalar_registry
    try:
        steps = _steps(type_, registry, config, frozenset())
    except _Strawberrys:
        return partial(convert_argument, type_=type_, scalar_registry=registry, config=config)
    return None if steps is None else partial(_run, steps)


def _run(steps: Callable[[Any], Any], value: Any, **_: Any) -> Any:
    return steps(value)


def _steps(
    type_: Any, registry: Mapping[object, Any], config: Any, within: frozenset[Any]
) -> Callable[[Any], Any] | None:
    """The conversion of a value of `type_` (None and UNSET kept, as strawberry keeps
    them), or None where every value is kept as it is; `within`: the input types whose
    conversion is being decided (one that holds itself is left to strawberry)."""
    if isinstance(type_, StrawberryMaybe):
        raise _Strawberrys  # wrapped in `Some`, and validated there
    if isinstance(type_, StrawberryOptional):
        return _steps(type_.of_type, registry, config, within)
    if isinstance(type_, StrawberryList):
        item = type_.of_type
        skip = (GlobalID,)
        if _is_leaf_type(item, registry, skip_classes=skip) or _is_optional_leaf_type(
            item, registry, skip_classes=skip
        ):
            # copied: graphql-core hands every request that omits it the same default
            return _kept(list)
        each = _steps(item, registry, config, within)
        if each is None:
            return _kept(list)
        return _kept(lambda values: [each(value) for value in values])
    if type_ is GlobalID:
        raise _Strawberrys
    if _is_leaf_type(type_, registry) or has_enum_definition(type_):
        return None
    if isinstance(type_, LazyType):
        return _steps(type_.resolve_type(), registry, config, within)
    if has_object_definition(type_):
        return _input(type_, registry, config, within)
    raise _Strawberrys


def _kept(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def step(value: Any) -> Any:
        return value if value is None or value is UNSET else convert(value)

    return step


def _input(
    type_: Any, registry: Mapping[object, Any], config: Any, within: frozenset[Any]
) -> Callable[[Any], Any]:
    definition = type_.__strawberry_definition__
    if definition.from_input is not None or not definition.is_input or type_ in within:
        raise _Strawberrys
    within |= {type_}
    defaults = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is MISSING and field.default_factory is MISSING
    }
    fields = tuple(
        (
            config.name_converter.from_field(field),
            field.python_name,
            _steps(field.resolve_type(type_definition=definition), registry, config, within),
        )
        for field in definition.fields
    )

    def build(value: Mapping[str, Any]) -> Any:
        kwargs = dict(defaults)
        for name, python_name, convert in fields:
            if name in value:
                item = value[name]
                kwargs[python_name] = item if convert is None else convert(item)
        return type_(**kwargs)

    return _kept(build)
