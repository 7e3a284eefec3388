"""Static cost analysis under the IBM GraphQL Cost Directives specification.

The estimate is the specification's field cost (its §5.3.2.2), an upper bound of what the
request runs, computed on the validated document before any resolver:

- each field weighs its `@cost`, else the weight of the type it returns: that type's `@cost`,
  else 0 for scalars and enums and 1 for objects; an interface or a union weighs as much as
  its heaviest member (§7.1, §7.2). The weights of its arguments (and of the input fields
  they carry) and of the arguments of its directives are added; a negative sum counts 0;
- a field's selections count once per item of the list it returns. `@listSize` says how
  long that list is: the largest of its `slicingArguments` given (or defaulted in the
  schema), else its `assumedSize`; with `sizedFields`, that size is the one of those
  sub-fields' lists (Relay connections: `edges` and `nodes`, by `first` or `last`). A list
  the directives do not size counts `UNSIZED_LIST` items, the largest page this API serves
  (the specification would say infinite: every list of our schema is sized,
  tests/test_cost.py checks it);
- `requireOneSlicingArgument` (true unless the directive says otherwise) makes a field that
  gets none or several of its slicing arguments a BAD_USER_INPUT (§8.4);
- beyond §8.2, whose slicing arguments are integers, a slicing argument that takes a list
  sizes the field by the list's length (`nodes(ids:)` returns one item per id);
- fragments and inline fragments count where they are spread; on an abstract type the
  estimate takes the costliest concrete type; `@skip`/`@include` and every variable are
  resolved; introspection is not counted (served from memory, and off in production);
- a slicing argument explicitly null, or defaulted to null, counts as not given.

Each document is compiled once into a plan (the schema's weights and sizes looked up, the
fragments resolved) kept in a bounded cache by its text; a request evaluates the plan with
its variables, and a plan that reads no variable has its cost computed once and for all.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from graphql import (
    ArgumentNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    SelectionSetNode,
    Undefined,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
)
from graphql.utilities import value_from_ast_untyped
from strawberry.extensions import SchemaExtension
from strawberry.types.unset import UNSET
from strawberry.utils.str_converters import to_camel_case

from api.errors import BadUserInput, QueryTooComplex
from api.extensions.limits import limits_of

Number = int | Fraction

UNSIZED_LIST = 100
# The plans kept, by the text of their document: at most this many, holding at most this
# many characters of text (a text longer than that is planned at each request).
PLAN_CACHE_SIZE = 512
PLAN_CACHE_CHARACTERS = 4 * 1024 * 1024
# The costs a plan keeps, by the values of the variables it reads: at most this many, each
# for variables of at most this many values (else computed at each request, a key being no
# cheaper to build than the cost).
COST_CACHE_SIZE = 64
COST_KEY_VALUES = 32
COST_HEADER = "x-query-cost"


class CostError(Exception):
    """A request the directives make invalid: a field that needs exactly one slicing argument."""


@dataclass(frozen=True)
class SizeRule:
    """A field's `@listSize`."""

    assumed_size: int | None
    slicing_arguments: tuple[str, ...]
    sized_fields: frozenset[str]
    require_one: bool


def _weight(value: object) -> Number:
    """A `weight`: a serialized float (§7.1), kept exact."""
    weight = Fraction(str(value))
    return weight.numerator if weight.denominator == 1 else weight


def _directive_arguments(element: Any, name: str) -> dict[str, Any] | None:
    """The arguments of directive `name` applied to a schema element: read from the SDL it
    was built from, or from strawberry's definition of it (our own schema)."""
    for node in (getattr(element, "ast_node", None), *getattr(element, "extension_ast_nodes", ())):
        for directive in getattr(node, "directives", None) or ():
            if directive.name.value == name:
                return {a.name.value: value_from_ast_untyped(a.value) for a in directive.arguments}
    definition = (getattr(element, "extensions", None) or {}).get("strawberry-definition")
    for directive in getattr(definition, "directives", None) or ():
        meta = getattr(type(directive), "__strawberry_directive__", None)
        if meta is not None and (meta.graphql_name or meta.python_name) == name:
            return {
                to_camel_case(f.name): value
                for f in dataclasses.fields(directive)
                if (value := getattr(directive, f.name)) is not UNSET
            }
    return None


def _list_depth(type_: GraphQLOutputType | GraphQLInputType) -> int:
    depth = 0
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        depth += isinstance(type_, GraphQLList)
        type_ = type_.of_type
    return depth


class CostModel:
    """The cost directives of one schema, read once, and the plans of its documents."""

    def __init__(self, schema: GraphQLSchema, unsized_list: int = UNSIZED_LIST) -> None:
        self.schema = schema
        self.unsized_list = unsized_list
        self._type_weights: dict[str, Number] = {}
        self._weights: dict[int, Number] = {}
        self._sizes: dict[int, SizeRule | None] = {}
        self._plans: OrderedDict[tuple[str, str | None], OperationPlan] = OrderedDict()
        self._characters = 0
        self._lock = threading.Lock()

    # --- the schema's weights ----------------------------------------------------------

    def type_weight(self, type_: GraphQLNamedType) -> Number:
        if type_.name not in self._type_weights:
            weight: Number
            if isinstance(type_, GraphQLInterfaceType | GraphQLUnionType):
                members = self.schema.get_possible_types(type_)
                weight = max((self.type_weight(t) for t in members), default=1)
            elif (declared := _directive_arguments(type_, "cost")) is not None:
                weight = _weight(declared["weight"])
            else:
                weight = 0 if isinstance(type_, GraphQLScalarType | GraphQLEnumType) else 1
            self._type_weights[type_.name] = weight
        return self._type_weights[type_.name]

    def weight(self, element: GraphQLField | GraphQLArgument | GraphQLInputField) -> Number:
        """A field's, an argument's or an input field's: its `@cost`, else its type's."""
        key = id(element)
        if key not in self._weights:
            declared = _directive_arguments(element, "cost")
            named = get_named_type(element.type)
            if declared is not None:
                self._weights[key] = _weight(declared["weight"])
            elif isinstance(named, GraphQLInputObjectType):
                self._weights[key] = 1  # a composite input type (§7.1)
            else:
                self._weights[key] = self.type_weight(named)
        return self._weights[key]

    def size_rule(self, field_def: GraphQLField) -> SizeRule | None:
        key = id(field_def)
        if key not in self._sizes:
            declared = _directive_arguments(field_def, "listSize")
            self._sizes[key] = (
                None
                if declared is None
                else SizeRule(
                    assumed_size=declared.get("assumedSize"),
                    slicing_arguments=tuple(declared.get("slicingArguments") or ()),
                    sized_fields=frozenset(declared.get("sizedFields") or ()),
                    require_one=declared.get("requireOneSlicingArgument") is not False,
                )
            )
        return self._sizes[key]

    def input_cost(self, type_: GraphQLInputType, value: Any) -> Number:
        """What the input fields of an argument's value weigh, nested ones included."""
        nullable = get_nullable_type(type_)
        if isinstance(nullable, GraphQLList):
            items = value if isinstance(value, list) else [value]
            return sum((self.input_cost(nullable.of_type, item) for item in items), 0)
        if not isinstance(nullable, GraphQLInputObjectType) or not isinstance(value, dict):
            return 0
        total: Number = 0
        for name, item in value.items():
            input_field = nullable.fields.get(name)
            if input_field is not None and item is not None and item is not Undefined:
                total += self.weight(input_field) + self.input_cost(input_field.type, item)
        return total

    # --- documents ---------------------------------------------------------------------

    def plan(
        self, document: DocumentNode, operation_name: str | None, text: str | None = None
    ) -> OperationPlan:
        """The plan of an operation, from the cache when its `text` was planned before."""
        if text is None or len(text) > PLAN_CACHE_CHARACTERS:
            return _Compiler(self, document).operation(operation_name)
        key = (text, operation_name)
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = _Compiler(self, document).operation(operation_name)
        with self._lock:
            if key not in self._plans:
                self._plans[key] = plan
                self._characters += len(text)
            while len(self._plans) > PLAN_CACHE_SIZE or self._characters > PLAN_CACHE_CHARACTERS:
                (evicted, _), _ = self._plans.popitem(last=False)
                self._characters -= len(evicted)
        return plan

    def cost(
        self,
        document: DocumentNode,
        operation_name: str | None = None,
        variables: Mapping[str, Any] | None = None,
        *,
        text: str | None = None,
    ) -> int:
        return self.plan(document, operation_name, text).cost(variables or {})


_MODELS: weakref.WeakKeyDictionary[GraphQLSchema, CostModel] = weakref.WeakKeyDictionary()


def cost_model(schema: GraphQLSchema) -> CostModel:
    model = _MODELS.get(schema)
    if model is None:
        model = _MODELS.setdefault(schema, CostModel(schema))
    return model


def estimate(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The estimated cost of the operation (an upper bound, rounded up)."""
    return cost_model(schema).cost(document, operation_name, variables)


# --- plans ---------------------------------------------------------------------------------

# A value in the document: (False, the constant) or (True, the variable's name).
_Source = tuple[bool, Any]


@dataclass(eq=False)
class _Field:
    """One field of a selection set, on one concrete type."""

    coordinate: str
    name: str
    conditions: tuple[tuple[bool, _Source], ...]  # (include?, its `if`), from @skip/@include
    weight: Number  # the field's, its constant arguments' and directives'
    arguments: tuple[tuple[GraphQLArgument, ValueNode], ...]  # those that read variables
    list_depth: int
    rule: SizeRule | None
    # Per slicing argument: the value given, the schema's default, whether it takes a list.
    slicing: tuple[tuple[_Source, Any, bool], ...]
    children: tuple[_Selections, ...]  # one per concrete type of what it returns
    dynamic: bool


@dataclass(eq=False)
class _Spread:
    conditions: tuple[tuple[bool, _Source], ...]
    selections: _Selections


@dataclass(eq=False)
class _Selections:
    """A selection set as it applies to one concrete type."""

    steps: list[_Field | _Spread] = field(default_factory=list)
    dynamic: bool = False


# What a parent's `sizedFields` passes down to its sub-fields: their names and their size.
_Override = tuple[frozenset[str], int] | None


class OperationPlan:
    def __init__(
        self,
        model: CostModel,
        root: _Selections | None,
        defaults: Mapping[str, Any],
        reads: Iterable[str] = (),
    ) -> None:
        self.model = model
        self.root = root
        self.defaults = dict(defaults)  # of the operation's variables
        self.reads = tuple(sorted(reads))  # the variables the cost depends on
        self._fixed: int | None = None
        self._costs: dict[tuple[Any, ...], int] = {}
        if root is not None and not root.dynamic:
            self._fixed = _Evaluation(model, self.defaults).total(root)

    def cost(self, variables: Mapping[str, Any]) -> int:
        if self._fixed is not None:
            return self._fixed
        if self.root is None:
            return 0
        key = _cost_key(self.reads, variables)
        if key is not None:
            cost = self._costs.get(key)
            if cost is not None:
                return cost
        cost = _Evaluation(self.model, {**self.defaults, **variables}).total(self.root)
        if key is not None:
            with self.model._lock:
                self._costs[key] = cost
                while len(self._costs) > COST_CACHE_SIZE:
                    del self._costs[next(iter(self._costs))]
        return cost


class _Unkeyed(Exception):
    """Variables too large (or of a kind JSON does not give) to key a cost by."""


_MISSING = object()


def _cost_key(reads: Sequence[str], variables: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The values of the variables a plan reads, each with its type: `true` and `1`, equal in
    Python, weigh differently (a boolean is no slicing size); None when too large.

    A string stands for its type alone: no string's text changes a cost (`_Evaluation` asks
    of a value whether it is null, a boolean, a number, a list or an object, never what a
    string says). So a mutation's input of free text (a message's body) finds its cost
    kept, and no client's text is kept with it."""
    budget = [COST_KEY_VALUES]
    try:
        return tuple(_frozen(variables.get(name, _MISSING), budget) for name in reads)
    except _Unkeyed:
        return None


def _frozen(value: Any, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Unkeyed
    if value is None or value is _MISSING or type(value) in (bool, int, float):
        return (type(value), value)
    if type(value) is str:
        return str
    if type(value) is list:
        return (list, tuple(_frozen(item, budget) for item in value))
    if type(value) is dict:
        return (dict, tuple((key, _frozen(item, budget)) for key, item in value.items()))
    raise _Unkeyed


class _Compiler:
    def __init__(self, model: CostModel, document: DocumentNode) -> None:
        self.model = model
        self.schema = model.schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.document = document
        self.compiled: dict[tuple[int, str], _Selections] = {}
        self.reads: set[str] = set()  # the variables the plan reads

    def operation(self, operation_name: str | None) -> OperationPlan:
        operation = get_operation_ast(self.document, operation_name)
        root = None if operation is None else self.schema.get_root_type(operation.operation)
        if operation is None or root is None:
            return OperationPlan(self.model, None, {})
        defaults = {
            definition.variable.name.value: value_from_ast_untyped(definition.default_value)
            for definition in operation.variable_definitions or ()
            if definition.default_value is not None
        }
        selections = self.selections(operation.selection_set, root)
        return OperationPlan(self.model, selections, defaults, self.reads)

    def source(self, node: ValueNode) -> _Source:
        if isinstance(node, VariableNode):
            self.reads.add(node.name.value)
            return (True, node.name.value)
        return (False, value_from_ast_untyped(node))

    def conditions(self, directives: Iterable[DirectiveNode]) -> tuple[tuple[bool, _Source], ...]:
        found = []
        for directive in directives:
            if directive.name.value in ("skip", "include"):
                for argument in directive.arguments or ():
                    if argument.name.value == "if":
                        found.append(
                            (directive.name.value == "include", self.source(argument.value))
                        )
        return tuple(found)

    def selections(self, selection_set: SelectionSetNode, type_: GraphQLObjectType) -> _Selections:
        key = (id(selection_set), type_.name)
        if key in self.compiled:  # compiled, or being compiled: a cycle (invalid) adds nothing
            return self.compiled[key]
        compiled = self.compiled[key] = _Selections()
        for selection in selection_set.selections:
            step: _Field | _Spread | None = None
            if isinstance(selection, FieldNode):
                step = self.field(selection, type_)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or self.applies(condition.name.value, type_):
                    inner = self.selections(selection.selection_set, type_)
                    step = _Spread(self.conditions(selection.directives or ()), inner)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None and self.applies(fragment.type_condition.name.value, type_):
                    inner = self.selections(fragment.selection_set, type_)
                    step = _Spread(self.conditions(selection.directives or ()), inner)
            if step is None or _never(step.conditions):
                continue
            compiled.steps.append(step)
            compiled.dynamic = compiled.dynamic or _dynamic(step)
        return compiled

    def applies(self, condition: str, type_: GraphQLObjectType) -> bool:
        target = self.schema.get_type(condition)
        if target is None or target.name == type_.name:
            return target is not None
        if isinstance(target, GraphQLInterfaceType | GraphQLUnionType):
            return self.schema.is_sub_type(target, type_)
        return False

    def field(self, node: FieldNode, parent: GraphQLObjectType) -> _Field | None:
        name = node.name.value
        field_def = parent.fields.get(name)
        if name.startswith("__") or field_def is None:
            return None  # introspection, or not in the schema (validation says so)
        model = self.model
        weight = model.weight(field_def)
        variable_arguments = []
        for arguments, definitions in self.argument_groups(node, field_def):
            for argument in arguments:
                definition = definitions.get(argument.name.value)
                if definition is None:
                    continue
                if _reads_variables(argument.value):
                    variable_arguments.append((definition, argument.value))
                    self.reads.update(_variables_in(argument.value))
                else:
                    weight += _argument_cost(
                        model, definition, value_from_ast_untyped(argument.value)
                    )
        rule = model.size_rule(field_def)
        given = {argument.name.value: argument.value for argument in node.arguments or ()}
        slicing = tuple(
            (
                self.source(given[argument]) if argument in given else (False, Undefined),
                _default(field_def.args.get(argument)),
                argument in field_def.args
                and isinstance(get_nullable_type(field_def.args[argument].type), GraphQLList),
            )
            for argument in (rule.slicing_arguments if rule else ())
        )
        children: tuple[_Selections, ...] = ()
        if node.selection_set is not None:
            returned = get_named_type(field_def.type)
            concrete = (
                self.schema.get_possible_types(returned)
                if isinstance(returned, GraphQLInterfaceType | GraphQLUnionType)
                else [returned]
            )
            children = tuple(
                self.selections(node.selection_set, t)
                for t in concrete
                if isinstance(t, GraphQLObjectType)
            )
        conditions = self.conditions(node.directives or ())
        return _Field(
            coordinate=f"{parent.name}.{name}",
            name=name,
            conditions=conditions,
            weight=weight,
            arguments=tuple(variable_arguments),
            list_depth=_list_depth(field_def.type),
            rule=rule,
            slicing=slicing,
            children=children,
            dynamic=bool(
                variable_arguments
                or any(variable for _, (variable, _) in conditions)
                or any(variable for (variable, _), _, _ in slicing)
                or any(child.dynamic for child in children)
            ),
        )

    def argument_groups(
        self, node: FieldNode, field_def: GraphQLField
    ) -> Iterator[tuple[Sequence[ArgumentNode], Mapping[str, GraphQLArgument]]]:
        """The field's arguments, then each of its directives' (§5.3.2.2)."""
        yield node.arguments or (), field_def.args
        for directive in node.directives or ():
            definition = self.schema.get_directive(directive.name.value)
            if definition is not None:
                yield directive.arguments or (), definition.args


class _Evaluation:
    """One evaluation of a plan with a request's variables."""

    def __init__(self, model: CostModel, variables: Mapping[str, Any]) -> None:
        self.model = model
        self.variables = variables
        self.memo: dict[tuple[int, _Override], Number] = {}

    def total(self, root: _Selections) -> int:
        return math.ceil(self.selections(root, None))

    def value(self, source: _Source) -> Any:
        variable, value = source
        return self.variables.get(value, Undefined) if variable else value

    def included(self, conditions: Iterable[tuple[bool, _Source]]) -> bool:
        for include, source in conditions:
            value = self.value(source)
            if isinstance(value, bool) and value is not include:
                return False
        return True

    def selections(self, selections: _Selections, override: _Override) -> Number:
        key = (id(selections), override)
        if key not in self.memo:
            self.memo[key] = 0  # a cycle (invalid) adds nothing
            total: Number = 0
            for step in selections.steps:
                if not self.included(step.conditions):
                    continue
                if isinstance(step, _Spread):
                    total += self.selections(step.selections, override)
                else:
                    total += self.field(step, override)
            self.memo[key] = total
        return self.memo[key]

    def field(self, step: _Field, override: _Override) -> Number:
        weight = step.weight
        for definition, node in step.arguments:
            weight += _argument_cost(self.model, definition, self.argument_value(node))
        cost: Number = max(weight, 0)
        if not step.children:
            return cost
        rule = step.rule
        items = 1
        if step.list_depth:
            if override is not None and step.name in override[0]:
                size = override[1]
            elif rule is not None and not rule.sized_fields:
                size = self.size(step, rule)
            else:
                size = self.model.unsized_list
            items = size**step.list_depth
        passed: _Override = None
        if rule is not None and rule.sized_fields:
            passed = (rule.sized_fields, self.size(step, rule))
        heaviest = max(self.selections(child, passed) for child in step.children)
        return cost + items * heaviest

    def argument_value(self, node: ValueNode) -> Any:
        if isinstance(node, VariableNode):
            return self.variables.get(node.name.value, Undefined)
        return value_from_ast_untyped(node, dict(self.variables))

    def size(self, step: _Field, rule: SizeRule) -> int:
        given = []
        for source, default, takes_list in step.slicing:
            value = self.value(source)
            if value is None or value is Undefined:
                value = default
            if takes_list and value is not None and value is not Undefined:
                value = len(value) if isinstance(value, list) else 1  # one value: a list of one
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # a variable's 100.0 is an Int of 100 (graphql-core)
            if isinstance(value, int) and not isinstance(value, bool):
                given.append(max(value, 0))
        if rule.require_one and rule.slicing_arguments and len(given) != 1:
            names = ", ".join(f"`{name}`" for name in rule.slicing_arguments)
            raise CostError(f"`{step.coordinate}` takes exactly one of {names}.")
        if given:
            return max(given)
        if rule.assumed_size is not None:
            return int(rule.assumed_size)
        return self.model.unsized_list


def _default(argument: GraphQLArgument | None) -> Any:
    if argument is None or argument.default_value is Undefined:
        return Undefined
    return argument.default_value


def _argument_cost(model: CostModel, definition: GraphQLArgument, value: Any) -> Number:
    """An argument given a value weighs its weight and its input fields' (§5.3.2.2)."""
    if value is None or value is Undefined:
        return 0
    return model.weight(definition) + model.input_cost(definition.type, value)


def _reads_variables(node: ValueNode) -> bool:
    if isinstance(node, VariableNode):
        return True
    values = getattr(node, "values", None)
    if values is not None:
        return any(_reads_variables(v) for v in values)
    fields = getattr(node, "fields", None)
    if fields is not None:
        return any(_reads_variables(f.value) for f in fields)
    return False


def _variables_in(node: ValueNode) -> Iterator[str]:
    if isinstance(node, VariableNode):
        yield node.name.value
    for value in getattr(node, "values", None) or ():
        yield from _variables_in(value)
    for object_field in getattr(node, "fields", None) or ():
        yield from _variables_in(object_field.value)


def _never(conditions: Iterable[tuple[bool, _Source]]) -> bool:
    """A constant @skip(if: true) or @include(if: false)."""
    return any(not variable and value is not include for include, (variable, value) in conditions)


def _dynamic(step: _Field | _Spread) -> bool:
    if isinstance(step, _Field):
        return step.dynamic
    return step.selections.dynamic or any(variable for _, (variable, _) in step.conditions)


# --- the extension ---------------------------------------------------------------------------


def asks_for_cost(context: object) -> bool:
    """A request with `X-Query-Cost: true` gets its cost in the answer's extensions."""
    request = getattr(context, "request", None)
    headers = getattr(request, "headers", None)
    return headers is not None and headers.get(COST_HEADER, "").strip().lower() == "true"


def check_cost(execution_context: Any) -> int | None:
    """The cost of a validated operation, refused (QUERY_TOO_COMPLEX) above the context's
    limit; None when the document did not validate."""
    if execution_context.pre_execution_errors or execution_context.graphql_document is None:
        return None
    model = cost_model(execution_context.schema._schema)
    variables = execution_context.variables
    try:
        cost = model.cost(
            execution_context.graphql_document,
            execution_context.operation_name,
            # Anything but an object is refused by the execution that follows.
            variables if isinstance(variables, Mapping) else None,
            text=execution_context.query,
        )
    except CostError as error:
        raise BadUserInput(str(error)) from None
    max_cost = limits_of(execution_context.context).max_cost
    if cost > max_cost:
        raise QueryTooComplex(
            f"The estimated cost of this operation, {cost}, is over the {max_cost} allowed.",
            cost=cost,
            maxCost=max_cost,
        )
    return cost


class CostLimit(SchemaExtension):
    """Refuses an operation whose estimated cost is over `MAX_QUERY_COST`, once it is valid
    and before it runs; gives the cost to a request that asks for it (`X-Query-Cost: true`)."""

    def __init__(self) -> None:
        self.cost: int | None = None

    def on_validate(self) -> Iterator[None]:
        yield
        self.cost = check_cost(self.execution_context)

    def get_results(self) -> dict[str, Any]:
        if self.cost is None or not asks_for_cost(self.execution_context.context):
            return {}
        return {"cost": self.cost}


__all__ = [
    "COST_HEADER",
    "UNSIZED_LIST",
    "CostError",
    "CostLimit",
    "CostModel",
    "OperationPlan",
    "SizeRule",
    "asks_for_cost",
    "check_cost",
    "cost_model",
    "estimate",
]
