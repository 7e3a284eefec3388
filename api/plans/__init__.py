"""Compiled plans: the selection of a document resolved once to a table of field readers.

graphql-core executes a document field by field: for each field of each object it builds a
response path entry, a resolve-info object (strawberry's, with the operation's extensions),
calls the field's resolver through strawberry's wrapper, tests the result for
awaitability twice and walks `complete_value` down to the leaf's serialiser. For the
dossier read (bench/dossier.py) that is ~120 fields a request, most of them leaves of
plain objects (`title`, `category`, `date`, `lastName`, `__typename`): half of what the
server spends executing.

A plan (`DocumentPlan`) is built per document, on its first run, and cached by the
schema's fingerprint and the SHA-256 of the document's full text (`PlanCache`): for each
field node of the document and the object type it is read on, either a reader or nothing.
A reader exists only where it is provably what the standard executor would do:

- `__typename`: the name of the object type (graphql-core's `MetaFields.type_name`);
- `LeafReader`, a strawberry "basic" field (no resolver, no field extension such as a
  permission, no exception handler: strawberry's own `_get_basic_result`, which ignores its
  info) without arguments, whose type is a scalar or an enum, possibly non-null, not a
  list: the value is read by that same function (or, when the field's default resolver is
  `getattr`, as strawberry's default is, by `getattr(source, python_name)`, which is what
  it calls) and serialised by the type's own `coerce_output_value`;
- `ObjectReader`, a basic field without arguments whose type is an object type or a list
  of one (`Connection.edges`, `Edge.node`): read the same way, then completed by the plan
  when the value is an object its type accepts (no `is_type_of`, or strawberry's, which
  ignores its info and is called as graphql-core calls it) or a `list` of such objects,
  none null, an error or awaitable;
- `ResolverReader`, a field strawberry resolves through its synchronous wrapper
  (`from_resolver`'s `_resolver`) with no argument, no exception handler and no extension
  that reshapes arguments: the plan builds the resolve info and strawberry's Info with
  strawberry's own function (taken from the wrapper), and calls the field's extension
  chain (the very functions strawberry chained: a `PermissionExtension`'s `resolve`, hence
  the same `has_permission`, the same refusal and the same `fail_silently`) around
  `field.get_result`, as the wrapper does; a leaf's value is serialised in place (as a
  LeafReader's), anything else is completed by graphql-core. When the field's one
  extension is a permission whose classes say their decision is the operation's alone
  (`decided_by_operation`: `SeesIdentity`, which reads the actor), around a field without
  resolver, the plan asks `has_permission` itself (the same call the chain makes first):
  once granted, the field is read on the operation's other objects without asking again
  and without a resolve info (on a grant the chain only calls `get_result`, which then
  ignores its info); anything but a grant runs the chain, for every object, as
  strawberry does. The grants are the executor's, so never kept past the operation.

- `AsyncResolverReader`, an asynchronous field strawberry resolves through its
  `_async_resolver` (arguments allowed; no exception handler, no extension that reshapes
  arguments): the arguments are coerced by graphql-core's `get_argument_values` as
  eagerly as there (an error is handled at once, in the same order), and converted as
  strawberry's `convert_arguments` would, each argument's conversion decided once per plan
  (none for scalars but GlobalID and enums, optional or not: graphql-core already gave
  their values; strawberry's own `convert_argument` for the rest). The rest runs when the
  answer is awaited, as strawberry's coroutine does: its Info, the extension chain as it
  chains it (a `PermissionExtension`'s `resolve_async` run by the plan step for step: the
  same `has_permission` calls with the same arguments, in the same order, the same
  refusal, `fail_silently` and non-bool error, without `await_maybe`'s coroutine per
  decision), then graphql-core's `complete_awaitable_value`: one coroutine where they
  chain four (`complete_awaitable_value`, `with_abort_signal`, `_async_resolver`,
  `await_maybe`). Left to graphql-core under an abort signal (`with_abort_signal`).

Readers call what strawberry's wrappers end in, taken once per plan: the Info class with
its field (`_strawberry_info_from_graphql`), a resolver's `wrapped_func` (what
`get_result` and `StrawberryResolver.__call__` call); a strawberry enum's output names for
its members (its `coerce_output_value` scans the enum's values per call); a `str` of a
String or ID as it is (what their serialisers answer). A resolver's value of a nullable
object or abstract type that is neither null, an error nor awaitable goes straight to
`complete_object_value` / `complete_abstract_value`, where `complete_value` sends it.

The completion of an object whose type the plan knows (`complete_object_value`) runs its
sub-fields in one loop over precomputed entries (graphql-core's own `collect_subfields`,
memoised per execution, each field with its reader; kept with the plan, for every request,
when no directive or fragment argument in the document can make them depend on the
request's variables: `collects_statically`): leaves are read and serialised in
place, without a response path, resolve info or dispatch; lists of objects are completed
item by item with the paths graphql-core would give them. A strawberry union none of whose
members is generic resolves a value whose `__strawberry_definition__` is one of its
members' (not `strawberry.cast`) to that member, as strawberry's `_resolve_union_type`
does ("exact type match"). Errors go through graphql-core's `handle_field_error` with the
same path, return type and field nodes as there (null propagation, error paths and codes
identical), pending awaitables are settled as graphql-core settles them, and any value the
plan does not complete exactly as graphql-core would (null, an error, an awaitable, an
object refused by `is_type_of`, a list that is not a `list`, a value a leaf type does not
serialise) is completed by graphql-core's `complete_value` with a resolve info built for
it. Anything else (arguments of a synchronous field, `@defer`/`@stream`, directives on an
object field, middleware) runs through graphql-core unchanged. The whole plan is off
when schema extensions wrap resolvers (graphql-core middleware), for subscriptions, and
when `COMPILED_PLANS=false`; tests/test_plans_differential.py,
tests/test_plans_completion.py and tests/test_plans_async_fields.py compare both paths.

`PlannedExecutor` is the schema's `execution_context_class` (api/schema.py).

Measured (bench/plans.py, the dossier read): the list of 20 documents costs ~18% of the
app's time on the plan against ~32% on graphql-core's completion (py-spy, in-process), so
the server spends 12 to 17% less CPU per request than on the standard executor. What is
left of the execution is the resolvers' own work (the page's statement, the relation and
its permission decisions, the access event, the author's resolve info and Info) and
strawberry's operation hooks; the HTTP layer, authentication and the aiosqlite hand-off
are outside the executor. With `SeesIdentity` hoisted and the first page read without the
ORM's queryset, strawberry's `selected_fields` or a gather of primed loaders
(resolvers/dossier.py, resolvers/pagination.py), the `documents` field went from ~26% to
~20% of the main thread (py-spy, in-process, the same code otherwise; median of seven
alternated pairs), and the main thread makes 12.6% fewer calls a request (18,334 profile
events against 16,022). Of the field, what is left is the page's statement and its
hand-off (~25%), the rows' conversion (dates, moments, ids: ~20%), the authors' model
instances that prime the loaders (~11%), and a node and an edge a row.
"""

from api.plans.executor import PlannedExecutor, plans_enabled
from api.plans.plan import PLANS, DocumentPlan, PlanCache, schema_fingerprint

__all__ = [
    "PLANS",
    "DocumentPlan",
    "PlanCache",
    "PlannedExecutor",
    "plans_enabled",
    "schema_fingerprint",
]
