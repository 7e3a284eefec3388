"""The typed per-request context every resolver receives, and the process-wide services.

Over HTTP a context lives for one request. A websocket has one context of its own (built
once, at the handshake, by strawberry's `get_context`), from which every operation on the
socket derives a fresh one (`for_operation`): its own request id, clock, loaders and audit
trail, and the actor its token designates at that moment. A subscription, which lives long,
refreshes its clock, loaders and audit trail at each delivery (`refresh`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from api.config import Settings
from models.access import Actor
from models.audit import AuditTrail
from models.base import paris_today, utcnow
from models.blobs import BlobStore
from models.crypto import Vault
from models.session import session_active
from subscriptions.channels import access_announcer

if TYPE_CHECKING:
    from api.budget import RequestBudget
    from resolvers.loaders import Loaders
    from subscriptions.broadcast import EventBus

# A random (version 4) UUID's bits: its version nibble and RFC 4122 variant, set as
# `uuid.uuid4()` sets them.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    """`uuid.uuid4().hex`, without building the UUID object: every request makes one."""
    return f"{int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET:032x}"


@dataclass
class Services:
    """Built once per process in the lifespan."""

    settings: Settings
    vault: Vault
    bus: EventBus
    blobs: BlobStore
    budget: RequestBudget | None = None  # the request budget (api/budget.py); None: unlimited


@dataclass(slots=True)  # one per operation: a subscription holds it while idle
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    services: Services
    actor: Actor
    client: str
    request_id: str = field(default_factory=new_request_id)
    now: datetime = field(default_factory=utcnow)
    connection_params: dict[str, Any] | None = None  # a websocket's connection_init payload
    # Set when an operation found its session revoked or expired: the socket closes (4401).
    session_ended: bool = False
    _loaders: Loaders | None = None
    _audit: AuditTrail | None = None

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def vault(self) -> Vault:
        return self.services.vault

    @property
    def today(self) -> date:
        return paris_today(self.now)

    @property
    def audit(self) -> AuditTrail:
        if self._audit is None:
            self._audit = AuditTrail(
                request_id=self.request_id,
                actor_id=self.actor.id,
                actor_role=self.actor.audit_role,
                now=self.now,
                announce=access_announcer(self.services.bus),
            )
        return self._audit

    async def announce_access(self) -> None:
        """Once the operation is over (its transactions committed): the live access logs
        hear of the events it wrote inside them (api/extensions/access_announce.py)."""
        if self._audit is not None:
            await self._audit.flush()

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            from resolvers.loaders import Loaders

            self._loaders = Loaders(self)
        return self._loaders

    def release(self) -> None:
        """Once an operation (over HTTP) or a delivery (of a subscription) is over: its
        loaders let go. They and this context reference each other (and each loader its own
        bound methods), so, left alone, an operation's loaders, their futures and rows
        waited for the cyclic collector; cut here, they are freed as it ends. A loader
        still in use keeps working, and `loaders` makes new ones if asked again."""
        loaders, self._loaders = self._loaders, None
        if loaders is not None:
            loaders.release()

    def for_operation(self, actor: Actor) -> Context:
        """The context of one operation on a websocket, derived from the socket's: the same
        connection (request, services, client address, init payload), with `actor` as just
        re-authenticated, a request id, a clock, loaders and an audit trail of its own."""
        return replace(
            self,
            actor=actor,
            request_id=new_request_id(),
            now=utcnow(),
            session_ended=False,
            _loaders=None,
            _audit=None,
        )

    def refresh(self) -> None:
        """A fresh clock, loaders and audit trail, at each delivery of a subscription: what
        was cached for the last one (rights included) never serves the next."""
        self.now = utcnow()
        self.release()
        self._audit = None

    async def session_alive(self) -> bool:
        """Whether the actor's session is still valid, re-checked by subscriptions at each
        delivery; False for no session, and a revoked or expired one marks `session_ended`."""
        session_id = self.actor.session_id
        if session_id is None:
            return False
        if await session_active(session_id, now=utcnow()):
            return True
        self.session_ended = True
        return False


Info: TypeAlias = StrawberryInfo[Context, None]
