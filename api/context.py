"""The typed per-request context every resolver receives, and the process-wide services."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
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

if TYPE_CHECKING:
    from resolvers.loaders import Loaders
    from subscriptions.broadcast import EventBus


@dataclass
class Services:
    """Built once per process in the lifespan."""

    settings: Settings
    vault: Vault
    bus: EventBus
    blobs: BlobStore


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    services: Services
    actor: Actor
    client: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    now: datetime = field(default_factory=utcnow)
    connection_params: dict[str, Any] | None = None  # a websocket's connection_init payload
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
            )
        return self._audit

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            from resolvers.loaders import Loaders

            self._loaders = Loaders(self)
        return self._loaders


Info: TypeAlias = StrawberryInfo[Context, None]
