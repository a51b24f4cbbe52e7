"""Automatic persisted queries: Apollo's APQ protocol, kept in Redis with a bound.

A client sends ``extensions.persistedQuery = {"version": 1, "sha256Hash": h}`` and no
query. A known ``h`` runs the document stored under it; an unknown one answers the error
``PersistedQueryNotFound`` (``extensions.code = PERSISTED_QUERY_NOT_FOUND``), and the
client sends the hash again with the query, which must hash to ``h``, is stored and runs.
Over GET (``?extensions={...}&variables={...}``) the URL stays short; the answer says
``Cache-Control: private`` and ``Vary: Authorization`` (a shared cache must not hand one
user's answer to another). Stores are per principal, and registering needs a token.

Bound: every stored document expires ``ttl_s`` after it was last registered, an index
(a sorted set by registration time) keeps at most ``max_entries`` and drops the oldest,
and documents over ``MAX_DOCUMENT_BYTES`` run without being stored. ``max_entries = 0``
turns APQ off (``PersistedQueryNotSupported``, which Apollo clients understand). Redis
unreachable: hashes are "not found" and texts run unstored, so clients keep working.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field, replace

from arq.connections import ArqRedis
from graphql import GraphQLError
from strawberry.http import GraphQLRequestData

from accountgraph.domain import Principal
from accountgraph.metrics import name_operations

log = logging.getLogger(__name__)

KEY_PREFIX = "accountgraph:apq:"
INDEX_KEY = "accountgraph:apq-index"
MAX_DOCUMENT_BYTES = 50_000
REDIS_TIMEOUT_S = 1.0
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# Apollo Server's header on the miss: a cache must not keep it (the next try registers).
NO_STORE = {"Cache-Control": "private, no-cache, must-revalidate"}


@dataclass(frozen=True)
class Refusal:
    """What to answer instead of running the request: one GraphQL error."""

    message: str
    code: str
    status: int = 400
    headers: dict[str, str] = field(default_factory=dict)

    def error(self) -> GraphQLError:
        return GraphQLError(self.message, extensions={"code": self.code})


NOT_FOUND = Refusal("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND", 200, NO_STORE)
NOT_SUPPORTED = Refusal(
    "PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED", 200, NO_STORE
)


@dataclass
class RefusedRequest(GraphQLRequestData):
    """A request whose persisted query cannot run; the view answers ``refusal``."""

    refusal: Refusal = NOT_FOUND


class PersistedQueries:
    """The APQ store on the app's Redis pool."""

    def __init__(
        self, redis: ArqRedis, *, ttl_s: int, max_entries: int, anonymous_register: bool = False
    ) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.anonymous_register = anonymous_register

    async def resolve(
        self, data: GraphQLRequestData, principal: Principal | None = None
    ) -> GraphQLRequestData:
        """``data`` with its query filled in from (or registered in) the store, or a
        ``RefusedRequest``. Requests without ``extensions.persistedQuery`` pass unchanged.

        Each principal (an account's tokens, the operators, anonymous clients) has a store
        of its own: nobody learns by a hash what documents others send. Without a token a
        document is registered only when ``anonymous_register`` is set; otherwise it runs
        unstored."""
        persisted = (data.extensions or {}).get("persistedQuery")
        if persisted is None:
            return data
        if self.max_entries == 0:
            return _refused(data, NOT_SUPPORTED)
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            return _refused(data, Refusal("Unsupported persisted query version", "INVALID_INPUT"))
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            return _refused(
                data,
                Refusal("persistedQuery.sha256Hash must be 64 hexadecimal digits", "INVALID_INPUT"),
            )
        digest = digest.lower()
        key = ("anonymous" if principal is None else principal.key) + ":" + digest
        if data.query is None:
            query = await self._get(key)
            return replace(data, query=query) if query is not None else _refused(data, NOT_FOUND)
        if hashlib.sha256(data.query.encode()).hexdigest() != digest:
            return _refused(data, Refusal("provided sha does not match query", "INVALID_INPUT"))
        registers = principal is not None or self.anonymous_register
        if registers and len(data.query.encode()) <= MAX_DOCUMENT_BYTES:
            await self._put(key, data.query)
            if principal is not None:
                name_operations(data.query)
        return data

    async def _get(self, key: str) -> str | None:
        try:
            found = await asyncio.wait_for(self.redis.get(KEY_PREFIX + key), REDIS_TIMEOUT_S)
        except Exception as error:  # Redis down: the client sends the text next
            log.warning("persisted query lookup failed: %s", error)
            return None
        return found.decode() if isinstance(found, bytes) else found

    async def _put(self, key: str, query: str) -> None:
        try:
            await asyncio.wait_for(self._store(key, query), REDIS_TIMEOUT_S)
        except Exception as error:  # Redis down: run the text without storing it
            log.warning("persisted query not stored: %s", error)

    async def _store(self, key: str, query: str) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(KEY_PREFIX + key, query, ex=self.ttl_s)
            pipe.zadd(INDEX_KEY, {key: now})
            pipe.zremrangebyscore(INDEX_KEY, "-inf", now - self.ttl_s)  # expired keys
            pipe.zcard(INDEX_KEY)
            *_, count = await pipe.execute()
        if count > self.max_entries:
            dropped = await self.redis.zpopmin(INDEX_KEY, count - self.max_entries)
            if dropped:
                await self.redis.delete(*(KEY_PREFIX + _text(member) for member, _ in dropped))


def _refused(data: GraphQLRequestData, refusal: Refusal) -> RefusedRequest:
    return RefusedRequest(
        query=None,
        variables=data.variables,
        operation_name=data.operation_name,
        extensions=data.extensions,
        protocol=data.protocol,
        refusal=refusal,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


__all__ = ["NOT_FOUND", "PersistedQueries", "Refusal", "RefusedRequest"]
