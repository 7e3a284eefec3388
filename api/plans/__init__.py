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
- a strawberry "basic" field (no resolver, no field extension such as a permission, no
  exception handler: strawberry's own `_get_basic_result`, which ignores its info) without
  arguments, whose type is a scalar or an enum, possibly non-null, not a list: the value
  is read by that same function (or, when the field's default resolver is `getattr`, as
  strawberry's default is, by `getattr(source, python_name)`, which is what it calls) and
  serialised by the type's own `coerce_output_value`.

Any other field (resolvers, permissions, lists, objects, unions) runs through graphql-core
unchanged, and so does a read field whose value is null, an exception, an awaitable or not
serialisable: that value is completed by graphql-core's `complete_value` (the same errors,
paths and codes). The whole plan is off when schema extensions wrap resolvers (graphql-core
middleware), for subscriptions, and when `COMPILED_PLANS=false`.

`PlannedExecutor` is the schema's `execution_context_class` (api/schema.py).

Measured (bench/plans.py, bench/dossier.py's read): the plan reads 80 of the ~120 fields of
the dossier page and takes 10 to 15% off graphql-core's execution of it, 1 to 5% of the server's
CPU per request. The rest of the execution is graphql-core's completion of objects, lists
and unions (paths, resolve infos, `is_type_of`, awaitable checks: ~20 µs per document of
the page), strawberry's resolver wrapper for fields with resolvers, and the resolvers'
own work (SQL, permissions, the access event): a plan that bypassed those would have to
re-implement graphql-core's completion, null propagation and error paths, which this
first slice deliberately does not.
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
