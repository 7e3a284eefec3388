"""The request budget: token buckets per caller, over requests and over query cost.

Each caller has up to four buckets: its session's (keyed by a keyed hash of its bearer
token, never the token itself) and its client address's (`api.auth.client_address`, kept
as a keyed hash too: Redis holds no token and no address), one over requests and one over
the estimated query cost (api/extensions/cost.py). A bucket holds `RATE_LIMIT_BURST_SECONDS`
of its rate and refills continuously at `..._PER_MINUTE / 60` a second; 0 switches a
budget off. A charge takes from every bucket it names or from none (a refusal spends
nothing), and a refusal is RATE_LIMITED with `retryAfter`, the seconds until the charge
would pass (HTTP 429 with `Retry-After`).

- Every HTTP request but the health probes and CORS preflights costs 1 request, charged
  by `BudgetMiddleware` before anything else runs (no token look-up, no body read); so
  does a websocket handshake, to its address.
- A query or a mutation is charged its estimated cost once it is valid and before it runs
  (`CostBudget`, a schema extension): a request over budget runs no resolver and no SQL.
- A websocket operation is charged 1 request as it arrives (`charge_operation`) and, a
  subscription, its cost before its stream starts (`charge_operation_cost`); both from
  api/ws_operations.py.

With `BROADCAST_URL=redis://…` the buckets live in Redis, shared by every worker and
machine: one Lua script per charge reads, refills and takes atomically, on Redis's clock.
With `memory://` they live in the process (bounded: the least recently used are forgotten).

When Redis cannot be reached the budget fails open, to each worker's own memory: a warning
is logged once per outage, the worker then counts in memory (so a flood is still bounded,
per worker) and tries Redis again every few seconds. Refusing every request instead would
turn a cache outage into an outage of the health record itself, for patients and
professionals who did nothing wrong; the budget is a guard against abuse, and the other
guards (size, depth and cost limits, login attempt limits in the database) keep working.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import redis.asyncio as aioredis
from graphql import GraphQLSchema, parse
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension

from api.auth import client_address
from api.errors import RateLimited
from api.extensions.cost import check_cost, cost_model
from api.extensions.limits import limits_of

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from api.config import Settings
    from models.crypto import Vault

logger = logging.getLogger(__name__)

KEY_PREFIX = "espace-sante:budget"
MEMORY_BUCKETS = 100_000  # buckets a process keeps at most (the least recently used go)
REDIS_TIMEOUT = 0.5  # seconds a charge waits for Redis before failing open
REDIS_RETRY = 5.0  # seconds without trying Redis again after it failed
EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})  # probes: never limited
STATE_KEY = "budget_caller"  # where the middleware leaves the caller, in the request's state

# KEYS: the buckets; ARGV: capacity, refill per millisecond and amount, for each bucket.
# Answers 0 when every bucket held its amount (then taken), else the milliseconds to wait
# until they all would (nothing taken). Time is Redis's, the same for every worker.
TAKE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[3 * i - 2])
  local per_ms = tonumber(ARGV[3 * i - 1])
  local amount = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil or at == nil then
    tokens = capacity
  else
    tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms)
  end
  levels[i] = tokens
  if tokens < amount then
    wait = math.max(wait, (amount - tokens) / per_ms)
  end
end
if wait > 0 then
  return math.ceil(wait)
end
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[3 * i - 2])
  local per_ms = tonumber(ARGV[3 * i - 1])
  local left = levels[i] - tonumber(ARGV[3 * i])
  redis.call('HSET', key, 'tokens', tostring(left), 'at', tostring(now))
  redis.call('PEXPIRE', key, math.ceil((capacity - left) / per_ms) + 1000)
end
return 0
"""


class Charge(NamedTuple):
    """`amount` taken from the bucket `key`, which holds `capacity` and refills `per_ms`
    (a tuple: two or four are made for every request, and a frozen dataclass is slow to
    build)."""

    key: str
    capacity: float
    per_ms: float
    amount: int


class Buckets(Protocol):
    async def take(self, charges: Sequence[Charge]) -> float:
        """0 when every charge was taken; else the milliseconds until they all could be
        (and nothing was taken)."""

    async def close(self) -> None: ...


class MemoryBuckets:
    """The buckets of one process, the least recently used forgotten past `max_buckets`
    (a forgotten bucket is a full one: the budget can only err on the lenient side)."""

    def __init__(
        self, max_buckets: int = MEMORY_BUCKETS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_buckets = max_buckets
        self.clock = clock  # seconds
        self._levels: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def take(self, charges: Sequence[Charge]) -> float:
        return self.take_now(charges, self.clock() * 1000)

    def take_now(self, charges: Sequence[Charge], now: float) -> float:
        """As `take`, at `now` (milliseconds); synchronous, so atomic in the event loop."""
        levels = []
        wait = 0.0
        for charge in charges:
            tokens, at = self._levels.get(charge.key, (charge.capacity, now))
            tokens = min(charge.capacity, tokens + max(0.0, now - at) * charge.per_ms)
            levels.append(tokens)
            if tokens < charge.amount:
                wait = max(wait, (charge.amount - tokens) / charge.per_ms)
        if wait > 0:
            return wait
        for charge, tokens in zip(charges, levels, strict=True):
            self._levels[charge.key] = (tokens - charge.amount, now)
            self._levels.move_to_end(charge.key)
        while len(self._levels) > self.max_buckets:
            self._levels.popitem(last=False)
        return 0.0

    async def close(self) -> None:
        self._levels.clear()


class RedisBuckets:
    """The buckets in Redis, shared by every process; this process's memory while Redis
    does not answer (failing open: see the module's docstring)."""

    def __init__(
        self,
        url: str,
        *,
        fallback: MemoryBuckets | None = None,
        timeout: float = REDIS_TIMEOUT,
        retry_after: float = REDIS_RETRY,
    ) -> None:
        self.url = url
        self.fallback = fallback or MemoryBuckets()
        self.timeout = timeout
        self.retry_after = retry_after
        self._client: aioredis.Redis | None = None
        self._script: Any = None
        self._down_until = 0.0
        self._down = False

    def _connected(self) -> Any:
        if self._script is None:
            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
            self._script = self._client.register_script(TAKE_SCRIPT)
        return self._script

    async def take(self, charges: Sequence[Charge]) -> float:
        if self._down and time.monotonic() < self._down_until:
            return await self.fallback.take(charges)
        args: list[str | int] = []
        for charge in charges:
            args += [repr(charge.capacity), repr(charge.per_ms), charge.amount]
        try:
            wait = await asyncio.wait_for(
                self._connected()(keys=[charge.key for charge in charges], args=args),
                self.timeout * 2,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._down:
                logger.warning(
                    "request budget: Redis unreachable (%r); this worker counts in memory"
                    " until it answers (failing open)",
                    exc,
                )
            self._down = True
            self._down_until = time.monotonic() + self.retry_after
            return await self.fallback.take(charges)
        if self._down:
            logger.warning("request budget: Redis answers again; budgets are shared again")
            self._down = False
        return float(wait)

    async def close(self) -> None:
        client, self._client, self._script = self._client, None, None
        if client is not None:
            await client.aclose()
        await self.fallback.close()


def buckets_for(broadcast_url: str) -> Buckets:
    """Redis when the broadcast backend is Redis (shared by every worker), else memory."""
    if broadcast_url.startswith(("redis://", "rediss://")):
        return RedisBuckets(broadcast_url)
    return MemoryBuckets()


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a request is charged to: the hashes of its session's token (None when it sends
    none) and of its client address."""

    session: str | None
    address: str


def bearer_token(value: object) -> str | None:
    """The token of an `Authorization: Bearer …` value; None for anything else (the
    request is refused later, as it would be without a budget)."""
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def token_of_params(params: Mapping[str, object] | None) -> str | None:
    """The token of a websocket's `connection_init` payload (key matched in any case)."""
    for key, value in (params or {}).items():
        if key.lower() == "authorization":
            return bearer_token(value)
    return None


ADDRESS_DIGESTS = 4096  # addresses whose digest a process keeps


class RequestBudget:
    """The budget of every caller, under one process's settings."""

    def __init__(self, settings: Settings, vault: Vault, buckets: Buckets | None = None) -> None:
        self.settings = settings
        self.vault = vault
        self.buckets = buckets if buckets is not None else buckets_for(settings.broadcast_url)
        rates = {
            ("session", "requests"): settings.rate_limit_requests_per_minute,
            ("session", "cost"): settings.rate_limit_cost_per_minute,
            ("address", "requests"): settings.rate_limit_address_requests_per_minute,
            ("address", "cost"): settings.rate_limit_address_cost_per_minute,
        }
        burst = settings.rate_limit_burst_seconds
        # The buckets switched on, in that order, with their key's prefix, capacity and
        # refill (per millisecond), worked out once rather than at every charge.
        self._buckets = tuple(
            (
                who,
                what,
                f"{KEY_PREFIX}:{who}:{what}:",
                # Settings check that a cost bucket holds the costliest request allowed.
                max(per_minute * burst / 60, 1.0),
                per_minute / 60_000,
            )
            for (who, what), per_minute in rates.items()
            if per_minute > 0
        )

    def caller(self, token: str | None, address: str) -> Caller:
        return Caller(
            session=None if token is None else self._hash(token, "session"),
            address=self._address_digest(address),
        )

    @functools.cached_property
    def _address_digest(self) -> Callable[[str], str]:
        """An address's digest, kept for the next request from it: addresses are few and
        come back. (Tokens, secrets, are hashed anew each time rather than kept.)"""
        return functools.lru_cache(maxsize=ADDRESS_DIGESTS)(
            functools.partial(self._hash, kind="address")
        )

    def caller_of(self, conn: HTTPConnection) -> Caller:
        return self.caller(
            bearer_token(conn.headers.get("authorization")), client_address(conn, self.settings)
        )

    def _hash(self, value: str, kind: str) -> str:
        return self.vault.keyed_hash(value, purpose=f"request-budget-{kind}")[:32]

    def charges(self, caller: Caller, *, requests: int = 0, cost: int = 0) -> list[Charge]:
        charges = []
        for who, what, prefix, capacity, per_ms in self._buckets:
            amount = requests if what == "requests" else cost
            digest = caller.session if who == "session" else caller.address
            if amount > 0 and digest is not None:
                charges.append(Charge(prefix + digest, capacity, per_ms, amount))
        return charges

    async def charge(self, caller: Caller, *, requests: int = 0, cost: int = 0) -> None:
        """Takes `requests` and `cost` from the caller's buckets, or raises RATE_LIMITED
        with the seconds after which the same charge would pass (nothing taken)."""
        charges = self.charges(caller, requests=requests, cost=cost)
        if not charges:
            return
        wait = await self.buckets.take(charges)
        if wait > 0:
            seconds = max(1, math.ceil(wait / 1000))
            raise RateLimited(
                f"The request budget is spent; try again in {seconds} s.", retry_after=seconds
            )

    async def close(self) -> None:
        await self.buckets.close()


# --- where it is charged --------------------------------------------------------------------


def rate_limited_response(error: RateLimited) -> JSONResponse:
    retry_after = str((error.extensions or {}).get("retryAfter", 1))
    return JSONResponse(
        {"errors": [error.formatted]},
        status_code=429,
        headers={"Retry-After": retry_after, "Cache-Control": "no-store"},
    )


class BudgetMiddleware:
    """Charges every HTTP request (but the probes and CORS preflights) 1 request, before
    anything else runs; a refusal answers 429 with `Retry-After`. A websocket handshake
    costs its address 1 request too (its token comes later, in `connection_init`); a
    refused one is denied with the same 429 where the server can send it (uvicorn can),
    else closed before it opens."""

    def __init__(self, app: ASGIApp, budget: RequestBudget) -> None:
        self.app = app
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._handshake(scope, receive, send)
            return
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        caller = self.budget.caller_of(HTTPConnection(scope))
        try:
            await self.budget.charge(caller, requests=1)
        except RateLimited as refused:
            await rate_limited_response(refused)(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = caller
        await self.app(scope, receive, send)

    async def _handshake(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await admit_socket(self.budget, scope, receive, send):
            await self.app(scope, receive, send)


async def admit_socket(budget: RequestBudget, scope: Scope, receive: Receive, send: Send) -> bool:
    """Charges a websocket handshake 1 request of its address; a refused one is denied with
    429 where the server can send it (uvicorn can), else closed before it opens (False)."""
    address = client_address(HTTPConnection(scope), budget.settings)
    try:
        await budget.charge(budget.caller(None, address), requests=1)
    except RateLimited as refused:
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(rate_limited_response(refused))
        else:
            await websocket.close(code=1013, reason="Try again later.")
        return False
    return True


def budget_of(context: object) -> RequestBudget | None:
    budget = getattr(getattr(context, "services", None), "budget", None)
    return budget if isinstance(budget, RequestBudget) else None


def _caller_of_context(budget: RequestBudget, context: Any) -> Caller:
    request = context.request
    if isinstance(request, WebSocket):  # the token of its connection_init
        return budget.caller(token_of_params(context.connection_params), context.client)
    caller = request.scope.get("state", {}).get(STATE_KEY)  # left by the middleware
    if isinstance(caller, Caller):
        return caller
    return budget.caller(bearer_token(request.headers.get("authorization")), context.client)


class CostBudget(SchemaExtension):
    """Charges a query's or a mutation's estimated cost to its caller's budget once it is
    valid (and within MAX_QUERY_COST), before any resolver runs."""

    async def on_execute(self) -> AsyncIterator[None]:
        execution_context = self.execution_context
        budget = budget_of(execution_context.context)
        if budget is not None:
            cost = check_cost(execution_context)  # the plan is cached: cheap the second time
            if cost:
                caller = _caller_of_context(budget, execution_context.context)
                await budget.charge(caller, cost=cost)
        yield


def operation_cost(
    context: object,
    schema: object,
    query: str,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> int:
    """The estimated cost of a websocket operation under `schema` (strawberry's or
    graphql-core's); 0 for a document that does not parse or is not valid (its stream then
    answers that error, having run nothing)."""
    graphql_schema = getattr(schema, "_schema", schema)
    if not isinstance(graphql_schema, GraphQLSchema):
        return 0
    try:
        document = parse(query, max_tokens=limits_of(context).max_tokens)
        return cost_model(graphql_schema).cost(
            document,
            operation_name,
            variables if isinstance(variables, Mapping) else None,
            text=query,
        )
    except Exception:  # reported by the stream, with its code
        return 0


async def charge_operation(context: object) -> None:
    """Charges a websocket operation 1 request as it arrives, or raises RATE_LIMITED."""
    budget = budget_of(context)
    if budget is not None:
        await budget.charge(_caller_of_context(budget, context), requests=1)


async def charge_operation_cost(
    context: object,
    schema: object,
    query: str,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> None:
    """Charges a websocket operation its cost before its stream starts, or raises
    RATE_LIMITED."""
    budget = budget_of(context)
    if budget is not None:
        cost = operation_cost(context, schema, query, operation_name, variables)
        await budget.charge(_caller_of_context(budget, context), cost=cost)


def retry_after_of(errors: Iterable[Mapping[str, Any]]) -> int | None:
    """The `retryAfter` of the first RATE_LIMITED error among formatted `errors`."""
    for error in errors:
        extensions = error.get("extensions") or {}
        if extensions.get("code") == RateLimited.code:
            value = extensions.get("retryAfter")
            return value if isinstance(value, int) else 1
    return None


__all__ = [
    "BudgetMiddleware",
    "Caller",
    "Charge",
    "CostBudget",
    "MemoryBuckets",
    "RedisBuckets",
    "RequestBudget",
    "bearer_token",
    "budget_of",
    "charge_operation",
    "charge_operation_cost",
    "rate_limited_response",
    "retry_after_of",
]
