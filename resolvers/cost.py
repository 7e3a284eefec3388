"""The cost directives of the IBM GraphQL Cost Directives specification, as schema directives.

They land in `schema.graphql` exactly as the specification defines them, and
api/extensions/cost.py reads them back from the schema to estimate a request before it runs.
The unit is the specification's default: one resolver returning an object (a database read,
usually through a loader) weighs 1, a scalar or an enum 0.
"""

from __future__ import annotations

import strawberry
from strawberry.schema_directive import Location


@strawberry.schema_directive(
    name="cost",
    locations=[
        Location.ARGUMENT_DEFINITION,
        Location.ENUM,
        Location.FIELD_DEFINITION,
        Location.INPUT_FIELD_DEFINITION,
        Location.OBJECT,
        Location.SCALAR,
    ],
    description="The weight of a field, type or argument in a request's estimated cost.",
)
class Cost:
    weight: str


@strawberry.schema_directive(
    name="listSize",
    locations=[Location.FIELD_DEFINITION],
    description=(
        "How long the list a field returns can be: `assumedSize`, or the largest of its "
        "`slicingArguments`; with `sizedFields`, the size of those sub-fields' lists instead."
    ),
)
class ListSize:
    assumed_size: int | None = strawberry.UNSET
    slicing_arguments: list[str] | None = strawberry.UNSET
    sized_fields: list[str] | None = strawberry.UNSET
    require_one_slicing_argument: bool | None = True


# A scalar field whose resolver runs a statement of its own (a count, a loader): it weighs
# what an object does.
READS_DATABASE = Cost(weight="1")

# Every mutation: a transaction that reads, writes and records an audit entry
# (api/schema.py gives it to each mutation that declares no weight of its own).
WRITE = Cost(weight="10")


def sized(assumed_size: int) -> ListSize:
    """A list with no argument to slice it, at most (or typically) `assumed_size` long."""
    return ListSize(assumed_size=assumed_size, require_one_slicing_argument=strawberry.UNSET)


# A list as long as its `first` argument, or the schema's default for it.
SLICED_BY_FIRST = ListSize(slicing_arguments=["first"], require_one_slicing_argument=False)

# Lists that are not paginated and that the domain does not cap: what a space holds in
# practice, with room to spare (the estimate of a request, not a promise).
FAMILY = sized(10)  # the minors a holder represents, the representatives of a minor
RECORD = sized(50)  # the vaccinations, screenings or consents of one space


__all__ = [
    "FAMILY",
    "READS_DATABASE",
    "RECORD",
    "SLICED_BY_FIRST",
    "WRITE",
    "Cost",
    "ListSize",
    "sized",
]
