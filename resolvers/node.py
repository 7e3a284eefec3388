"""The Node interface and `node`/`nodes`: each type registers a resolver that applies the
same access rules as every other path, so an id the viewer may not see is NOT_FOUND."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

import strawberry

from api.context import Info
from api.errors import BadUserInput, NotFound
from resolvers import ids
from resolvers.cost import ListSize


@strawberry.interface(name="Node", description="An object with an opaque global id.")
class Node:
    id: strawberry.ID = strawberry.field(
        description=(
            "Opaque and global (it names the type too): keep it as given, for `node(id:)` and "
            "for a client's cache."
        )
    )


NodeResolver = Callable[[Info, list[UUID]], Awaitable[dict[UUID, Any]]]
_RESOLVERS: dict[str, NodeResolver] = {}


def register(type_name: str) -> Callable[[NodeResolver], NodeResolver]:
    def decorate(fn: NodeResolver) -> NodeResolver:
        _RESOLVERS[type_name] = fn
        return fn

    return decorate


async def resolve_nodes(info: Info, global_ids: list[str]) -> list[Any | None]:
    parsed: list[tuple[str, UUID] | None] = []
    for gid in global_ids:
        try:
            parsed.append(ids.decode(gid))
        except NotFound:
            parsed.append(None)
    wanted: dict[str, list[UUID]] = {}
    for item in parsed:
        if item is not None and item[0] in _RESOLVERS:
            wanted.setdefault(item[0], []).append(item[1])
    found: dict[str, dict[UUID, Any]] = {
        name: await _RESOLVERS[name](info, pks) for name, pks in wanted.items()
    }
    return [None if item is None else found.get(item[0], {}).get(item[1]) for item in parsed]


MAX_NODES = 100


@strawberry.type
class NodeQuery:
    @strawberry.field(description="Any object by its global id; NOT_FOUND when not visible.")
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global `id`.")],
    ) -> Node | None:
        (found,) = await resolve_nodes(info, [str(id)])
        if found is None:
            raise NotFound()
        return found  # type: ignore[no-any-return]

    @strawberry.field(
        description=(
            "Objects by global id, in order; an id that is unknown or not visible is null "
            "with a NOT_FOUND error at its index."
        ),
        # As many as the ids sent (api/extensions/cost.py), at most MAX_NODES.
        directives=[
            ListSize(
                assumed_size=MAX_NODES,
                slicing_arguments=["ids"],
                require_one_slicing_argument=False,
            )
        ],
    )
    async def nodes(
        self,
        info: Info,
        ids: Annotated[
            list[strawberry.ID],
            strawberry.argument(
                description=f"Global ids, {MAX_NODES} at most (more is BAD_USER_INPUT)."
            ),
        ],
    ) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise BadUserInput(f"At most {MAX_NODES} ids at once.", field="ids")
        found = await resolve_nodes(info, [str(i) for i in ids])
        # graphql-core completes each awaitable item on its own, so a missing one is null
        # with its own error while the others still arrive.
        return [item if item is not None else _not_found() for item in found]  # type: ignore[misc]


async def _not_found() -> None:
    raise NotFound()
