"""P1: the principal of a bearer token, kept in-process for a few seconds.

Every request names its token; looking it up is one indexed statement, a pool checkout
and a round trip, which used to be a third of a small read. A gateway keeps what it
found for ``ACCOUNTGRAPH_PRINCIPAL_CACHE_S`` (default 5 s; 0: off), bounded in size.

Revocation reaches every gateway at once: ``tokens.revoke`` commits, then
``announce_revoked`` publishes the token's hash on ``CHANNEL``; each gateway's listener
drops that entry. The cache is only used while its listener is subscribed: with Redis
away (or before the first subscription) every request looks its token up again, so a
revocation is never missed for longer than the message takes. Unknown tokens are never
cached (a client cannot fill the memory with made-up ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

from accountgraph.domain import Principal

log = logging.getLogger(__name__)

CHANNEL = "accountgraph:principals:revoked"
EVERYTHING = "*"  # a message that drops every entry (a bulk revocation)
MAX_ENTRIES = 10_000
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
PING_EVERY_S = 10.0


class PrincipalCache:
    """Token hash → principal, for ``ttl_s`` seconds, while revocations can be heard."""

    def __init__(self, ttl_s: float, *, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0 and self._listening

    def get(self, digest: str) -> Principal | None:
        if not self.enabled:
            return None
        found = self._entries.get(digest)
        if found is None:
            return None
        expires, principal = found
        if expires < time.monotonic():
            del self._entries[digest]
            return None
        return principal

    def put(self, digest: str, principal: Principal) -> None:
        if not self.enabled:
            return
        self._entries[digest] = (time.monotonic() + self.ttl_s, principal)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, digest: str) -> None:
        if digest == EVERYTHING:
            self._entries.clear()
        else:
            self._entries.pop(digest, None)

    # ------------------------------------------------------------ revocations

    def start(self, redis: Any) -> None:
        """Listen for revocations on ``redis`` (the app's lifespan calls this)."""
        if self.ttl_s > 0 and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._listen(redis), name="principal-revocations")

    async def close(self) -> None:
        self._listening = False
        self._entries.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _listen(self, redis: Any) -> None:
        failures = 0
        while True:
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                await self._read(pubsub)
            except Exception as error:  # Redis gone or restarted: look tokens up meanwhile
                failures = 1 if self._listening else failures + 1
                log.warning("principal cache off until Redis pub/sub is back (%s)", error)
            finally:
                self._listening = False
                self._entries.clear()  # what was missed while away cannot be trusted
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(min(BACKOFF_MIN_S * 2 ** max(failures - 1, 0), BACKOFF_MAX_S))

    async def _read(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(timeout=PING_EVERY_S)
            if message is None:
                await pubsub.ping()
                continue
            if message["type"] == "subscribe":
                self._entries.clear()
                self._listening = True
            elif message["type"] == "message":
                data = message["data"]
                self.drop(data.decode() if isinstance(data, bytes) else str(data))


async def announce_revoked(redis: Any, digests: list[str]) -> None:
    """After the revocation committed: every gateway drops these tokens' entries."""
    for digest in digests:
        await redis.publish(CHANNEL, digest)
