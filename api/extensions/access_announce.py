"""After each query or mutation, the live access logs hear of the events it wrote inside
transactions (models/audit.py `AuditTrail.flush`): those are announced only once their
transaction committed, which the operation's end guarantees. Events written on their own
were announced at once, as they committed. Subscriptions announce their own."""

from __future__ import annotations

from collections.abc import AsyncIterator

from strawberry.extensions import SchemaExtension


class AnnounceAccessEvents(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        yield
        flush = getattr(self.execution_context.context, "announce_access", None)
        if flush is not None:
            await flush()
