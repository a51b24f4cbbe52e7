"""One Redis pub/sub connection per gateway process for every live ``notifications``
subscription (security finding 5), and the caps on how many a client may hold.

The hub subscribes to ``service.PUBSUB_CHANNEL`` once, with the first subscriber, and keeps
listening for the app's lifetime (``close()`` at shutdown). Each event is parsed once and
handed to every subscriber's feed in this process; each subscriber then reads the
notification itself, under its viewer's rights (``alerts/mutations.py``).

* A lost Redis connection (a restart, a kill, no answer to PING) is reopened with an
  exponential backoff (0.1 s doubling to 5 s); subscriptions stay open meanwhile and go on
  receiving once it is back. Pub/sub keeps nothing: events published while it was down are
  not replayed (the notifications themselves are stored, ``Account.notifications``).
* A slow subscriber never holds up the reader or the others: its feed keeps the newest
  ``QUEUE_SIZE`` events and drops the oldest (logged once per subscription). Publishing is
  at least once and each notification is stored, so a client that lags behind catches up
  with a query; it is not disconnected.
* At most ``max_subscriptions_per_principal`` live subscriptions per principal (all the
  operators share one budget, each account one) across every connection to this process,
  and ``max_subscriptions_per_connection`` per WebSocket. A refusal is a GraphQL error with
  ``extensions.code`` ``TOO_MANY_SUBSCRIPTIONS``; a slot is given back when its subscription
  ends in any way (completed, stopped by the client, socket closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections import Counter, deque
from typing import Any, NamedTuple, TypeVar

from graphql import GraphQLError

from accountgraph.alerts.service import PUBSUB_CHANNEL
from accountgraph.config import Settings

log = logging.getLogger(__name__)

QUEUE_SIZE = 100  # events a subscriber may lag behind before its oldest are dropped
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
PING_EVERY_S = 15.0  # a quiet connection is PINGed; no answer at all for DEAD_AFTER_S: reopen
DEAD_AFTER_S = 45.0
TOO_MANY = "TOO_MANY_SUBSCRIPTIONS"

Stream = TypeVar("Stream")


class Event(NamedTuple):
    """What the worker publishes (``service._publish``): which notification, whose."""

    notification_id: int
    account_id: int


def too_many(limit: int, per: str) -> GraphQLError:
    return GraphQLError(
        f"Too many subscriptions: at most {limit} per {per}.",
        extensions={"code": TOO_MANY, "limit": limit, "per": per},
    )


class Feed:
    """One subscription's events, newest ``size`` kept; ``async for event in feed`` until
    the hub closes. ``close()`` gives its slot back (idempotent)."""

    def __init__(self, hub: NotificationFanout, principal: str, connection: int, size: int) -> None:
        self._hub = hub
        self.principal = principal
        self.connection = connection
        self._events: deque[Event] = deque(maxlen=size)
        self._ready = asyncio.Event()
        self._ended = False
        self.closed = False
        self.dropped = 0

    def offer(self, event: Event) -> None:
        """Never waits: a full feed drops its oldest event."""
        if len(self._events) == self._events.maxlen:
            if not self.dropped:
                log.warning(
                    "a notifications subscriber of %s is too slow: dropping its "
                    "oldest events (keeps %d)",
                    self.principal,
                    self._events.maxlen,
                )
            self.dropped += 1
        self._events.append(event)
        self._ready.set()

    def end(self) -> None:
        self._ended = True
        self._ready.set()

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> Event:
        while not self._events:
            if self._ended:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._events.popleft()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub._release(self)

    def bind(self, stream: Stream) -> Stream:
        """Give the slot back when ``stream`` (the subscription's generator, whose
        ``finally`` calls ``close()``) is collected without ever having started: a
        subscription stopped between the limit check and its first step."""
        weakref.finalize(stream, self.close)
        return stream


class NotificationFanout:
    """The hub of one app instance (``GraphQLApp.notifications``)."""

    def __init__(
        self,
        redis: Any,
        settings: Settings,
        *,
        channel: str = PUBSUB_CHANNEL,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._redis = redis
        self._channel = channel
        self._queue_size = queue_size
        self.max_per_principal = settings.max_subscriptions_per_principal
        self.max_per_connection = settings.max_subscriptions_per_connection
        self._feeds: set[Feed] = set()
        self._by_principal: Counter[str] = Counter()
        self._by_connection: Counter[int] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._listening = False
        self._closed = False

    @property
    def active(self) -> int:
        """Live subscriptions in this process."""
        return len(self._feeds)

    @property
    def listening(self) -> bool:
        """Subscribed on Redis right now (Redis confirmed it)."""
        return self._listening

    def open(self, principal: str, connection: object) -> Feed:
        """A feed for one new subscription of ``principal`` on ``connection`` (any object
        that lives as long as the WebSocket: its identity is the key), or the refusal."""
        if self._closed:
            raise GraphQLError(
                "The server is shutting down; subscribe again.", extensions={"code": "UNAVAILABLE"}
            )
        key = id(connection)
        if self._by_connection[key] >= self.max_per_connection:
            raise too_many(self.max_per_connection, "connection")
        if self._by_principal[principal] >= self.max_per_principal:
            raise too_many(self.max_per_principal, "principal")
        feed = Feed(self, principal, key, self._queue_size)
        self._feeds.add(feed)
        self._by_connection[key] += 1
        self._by_principal[principal] += 1
        self._start()
        return feed

    def _release(self, feed: Feed) -> None:
        if feed not in self._feeds:
            return
        self._feeds.discard(feed)
        self._by_connection[feed.connection] -= 1
        if self._by_connection[feed.connection] <= 0:
            del self._by_connection[feed.connection]
        self._by_principal[feed.principal] -= 1
        if self._by_principal[feed.principal] <= 0:
            del self._by_principal[feed.principal]

    async def close(self) -> None:
        """At app shutdown: stop listening, end every feed (their subscriptions complete)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for feed in tuple(self._feeds):
            feed.end()

    # ------------------------------------------------------------ the reader

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="notification-fanout")

    async def _listen(self) -> None:
        failures = 0
        while True:
            delay = BACKOFF_MIN_S
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                await self._read(pubsub)
            except Exception as error:  # Redis gone, restarted, or silent: reopen
                if self._listening:
                    failures = 0  # it worked until now: start the backoff afresh
                failures += 1
                delay = min(BACKOFF_MIN_S * 2 ** (failures - 1), BACKOFF_MAX_S)
                log.warning(
                    "notifications: Redis pub/sub lost (%s); reconnecting in %.1f s",
                    error or type(error).__name__,
                    delay,
                )
            finally:
                self._listening = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)

    async def _read(self, pubsub: Any) -> None:
        """Until the connection fails (raises): events to the feeds, a PING when quiet."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        while True:
            message = await pubsub.get_message(timeout=PING_EVERY_S)
            if message is None:
                if loop.time() - heard > DEAD_AFTER_S:
                    raise ConnectionError(f"no answer from Redis for {DEAD_AFTER_S:g} s")
                await pubsub.ping()
                continue
            heard = loop.time()
            if message["type"] == "subscribe":
                self._listening = True
            elif message["type"] == "message":
                self._dispatch(message["data"])

    def _dispatch(self, data: Any) -> None:
        try:
            found = json.loads(data)
            event = Event(int(found["notification_id"]), int(found["account_id"]))
        except (ValueError, TypeError, KeyError) as error:
            log.warning("notifications: event ignored (%s): %.200r", error, data)
            return
        for feed in tuple(self._feeds):
            feed.offer(event)


__all__ = ["Event", "Feed", "NotificationFanout", "too_many"]
