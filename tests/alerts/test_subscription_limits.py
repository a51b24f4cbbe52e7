"""Security finding 5: every live ``notifications`` subscription used to hold a Redis
connection of its own, with no cap (two WebSockets of 100 subscriptions took Redis from 5
to 205 clients). Now a gateway process listens on one shared connection
(``alerts/fanout.py``) and caps subscriptions per principal and per WebSocket. Real
uvicorn gateways, real WebSockets, real Redis, real notifications from a real worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import websockets
from arq import create_pool
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.typing import Subprotocol

from accountgraph.alerts.fanout import NotificationFanout
from accountgraph.alerts.service import PUBSUB_CHANNEL
from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.runtime import redis_settings
from tests.alerts.conftest import OwnRedis
from tests.alerts.support import (
    SUBSCRIBE,
    WS_PROTOCOL,
    alert_view,
    charge,
    drain,
    subscribers,
    wait_for,
    watched,
)
from tests.conftest import serving
from tests.helpers import OPERATOR_TOKEN, Api

RunJobs = Callable[[], Awaitable[None]]


@contextlib.asynccontextmanager
async def gateway(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, **limits: int
) -> AsyncIterator[tuple[str, NotificationFanout]]:
    """A gateway of this test's own (so its hub starts from nothing): its WebSocket URL and
    its hub, with ``limits`` (``max_subscriptions_per_principal=3``) over the settings."""
    app = create_app(settings.model_copy(update=limits), engine, redis)
    async with serving(app) as url:
        yield url.replace("http://", "ws://") + "/graphql", app.state.notifications


@contextlib.asynccontextmanager
async def connected(url: str, token: str = OPERATOR_TOKEN) -> AsyncIterator[Any]:
    async with websockets.connect(url, subprotocols=[Subprotocol(WS_PROTOCOL)]) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "connection_ack"
        yield socket


async def subscribe(socket: Any, ids: list[str], account: str | None = None) -> None:
    for id in ids:
        await socket.send(
            json.dumps(
                {
                    "id": id,
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": {"id": account}},
                }
            )
        )


async def receive(socket: Any, count: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(socket.recv(), timeout_s)) for _ in range(count)]


async def nothing(socket: Any, timeout_s: float = 0.5) -> None:
    with contextlib.suppress(TimeoutError):
        message = await asyncio.wait_for(socket.recv(), timeout_s)
        raise AssertionError(f"expected nothing, got {message}")


async def active(hub: NotificationFanout, count: int) -> None:
    """Until the hub has ``count`` live subscriptions and listens on Redis."""

    async def reached() -> bool:
        return hub.active == count and hub.listening

    await wait_for(reached)


def delivered(messages: list[dict[str, Any]]) -> dict[str, str]:
    """``next`` messages: subscription id -> notification id (each id once)."""
    assert all(message["type"] == "next" for message in messages), messages
    found = {
        message["id"]: message["payload"]["data"]["notifications"]["id"] for message in messages
    }
    assert len(found) == len(messages), messages
    return found


def refusal(message: dict[str, Any], id: str, limit: int, per: str) -> None:
    assert message["type"] == "error" and message["id"] == id, message
    [error] = message["payload"]
    assert error["message"] == f"Too many subscriptions: at most {limit} per {per}."
    assert error["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"


async def pubsub_clients(redis: ArqRedis) -> int:
    return len(await redis.client_list(_type="pubsub"))


# ---------------------------------------------------------------- (a) the attack


async def test_finding5_twenty_subscriptions_on_two_sockets_share_one_redis_connection(
    api: Api, settings: Settings, engine: AsyncEngine, redis: ArqRedis, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Watched by twenty")
    clients_before = int((await redis.info("clients"))["connected_clients"])
    pubsub_before = await pubsub_clients(redis)
    numsub_before = await subscribers(redis)

    async with (
        gateway(settings, engine, redis) as (url, hub),
        connected(url) as first,
        connected(url) as second,
    ):
        await subscribe(first, [str(n) for n in range(1, 11)])
        await subscribe(second, [str(n) for n in range(1, 6)], account)
        await subscribe(second, [str(n) for n in range(6, 11)])
        await active(hub, 20)

        clients = int((await redis.info("clients"))["connected_clients"])
        # was + 20, a connection per subscription; now the hub's one and the gateway's
        # revocation listener (accounts/principals.py), whatever the number of
        # subscriptions (the test's own pool may open one more for these very calls)
        assert clients - clients_before <= 3
        assert await pubsub_clients(redis) - pubsub_before == 2
        assert await subscribers(redis) - numsub_before <= 1

        await charge(api, account, "60.00")  # 100 -> 40: below 50, LOW_QUOTA
        await run_jobs()
        got_first = delivered(await receive(first, 10))
        got_second = delivered(await receive(second, 10))
        await nothing(first)
        await nothing(second, 0.1)

    [notification] = set(got_first.values()) | set(got_second.values())
    assert (
        sorted(got_first, key=int) == sorted(got_second, key=int) == [str(n) for n in range(1, 11)]
    )
    assert await pubsub_clients(redis) == pubsub_before  # closed with the gateway
    stored = (await alert_view(api, account))["notifications"]["edges"]
    assert [edge["node"]["id"] for edge in stored] == [notification]


# ---------------------------------------------------------------- (b) per WebSocket


async def test_finding5_the_eleventh_subscription_on_a_socket_is_refused_and_the_ten_go_on(
    api: Api, settings: Settings, engine: AsyncEngine, redis: ArqRedis, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Ten")
    async with gateway(settings, engine, redis) as (url, hub), connected(url) as socket:
        assert hub.max_per_connection == 10  # the default
        await subscribe(socket, [str(n) for n in range(1, 11)])
        await active(hub, 10)

        await subscribe(socket, ["11"])
        [message] = await receive(socket, 1)
        refusal(message, "11", 10, "connection")
        assert hub.active == 10

        await charge(api, account, "60.00")
        await run_jobs()
        got = delivered(await receive(socket, 10))  # the socket is still open
        await nothing(socket)

    assert sorted(got, key=int) == [str(n) for n in range(1, 11)]
    assert len(set(got.values())) == 1


# ---------------------------------------------------------------- (c) per principal


async def test_finding5_a_principal_holds_at_most_its_limit_across_sockets(
    api: Api, settings: Settings, engine: AsyncEngine, redis: ArqRedis, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Capped")
    own_token = await api.token(account)
    async with (
        gateway(settings, engine, redis, max_subscriptions_per_principal=3) as (url, hub),
        connected(url) as first,
        connected(url) as second,
        connected(url, own_token) as own,
    ):
        await subscribe(first, ["a", "b"])
        await active(hub, 2)
        await subscribe(second, ["c"])
        await active(hub, 3)

        await subscribe(second, ["d"])  # the operators' fourth, on a socket with only one
        [message] = await receive(second, 1)
        refusal(message, "d", 3, "principal")
        await subscribe(first, ["e"])
        [message] = await receive(first, 1)
        refusal(message, "e", 3, "principal")
        await subscribe(own, ["x", "y", "z"])  # another principal: a budget of its own
        await active(hub, 6)

        await charge(api, account, "60.00")
        await run_jobs()
        got = {**delivered(await receive(first, 2)), **delivered(await receive(second, 1))}
        got_own = delivered(await receive(own, 3))
        await nothing(first)
        await nothing(second, 0.1)
        await nothing(own, 0.1)

    assert sorted(got) == ["a", "b", "c"] and sorted(got_own) == ["x", "y", "z"]
    assert len(set(got.values()) | set(got_own.values())) == 1


# ---------------------------------------------------------------- (d) slots come back


async def test_finding5_a_completed_or_closed_subscription_frees_its_slot(
    api: Api, settings: Settings, engine: AsyncEngine, redis: ArqRedis, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Freed")
    async with gateway(settings, engine, redis, max_subscriptions_per_principal=2) as (url, hub):
        async with connected(url) as socket:
            await subscribe(socket, ["1", "2"])
            await active(hub, 2)
            await subscribe(socket, ["3"])
            refusal((await receive(socket, 1))[0], "3", 2, "principal")

            await socket.send(json.dumps({"id": "1", "type": "complete"}))  # stopped
            await active(hub, 1)
            await subscribe(socket, ["4"])
            await active(hub, 2)

            await charge(api, account, "60.00")
            await run_jobs()
            got = delivered(await receive(socket, 2))
            await nothing(socket)
        assert sorted(got) == ["2", "4"]

        await active(hub, 0)  # the socket closed: both slots are back
        async with connected(url) as again:
            await subscribe(again, ["5", "6"])
            await active(hub, 2)
            await nothing(again)  # no refusal


# ---------------------------------------------------------------- the shared connection


async def test_finding5_subscriptions_survive_a_redis_restart(
    api: Api, settings: Settings, engine: AsyncEngine, own_redis: OwnRedis
) -> None:
    """The hub reopens its connection with a backoff; the subscription stays open and gets
    the next notification (pub/sub keeps nothing published while Redis was down)."""
    account = await watched(api, "Restarted")
    pool = await create_pool(redis_settings(own_redis.url), default_queue_name=settings.queue_name)
    pool.connection_pool.connection_kwargs["socket_connect_timeout"] = 0.5
    try:
        async with gateway(settings, engine, pool) as (url, hub), connected(url) as socket:
            await subscribe(socket, ["1"], account)
            await active(hub, 1)

            own_redis.stop()

            async def lost() -> bool:
                return not hub.listening

            await wait_for(lost)
            own_redis.start()
            await active(hub, 1)  # listening again
            await nothing(socket, 0.1)  # no error, no complete: still subscribed

            await charge(api, account, "60.00")
            await drain(settings, engine, pool)  # the worker on the restarted Redis
            [message] = await receive(socket, 1)
    finally:
        await pool.aclose()

    assert delivered([message]) == {"1": message["payload"]["data"]["notifications"]["id"]}
    assert message["payload"]["data"]["notifications"]["kind"] == "LOW_QUOTA"


async def test_finding5_a_slow_subscriber_keeps_the_newest_events_and_never_blocks(
    settings: Settings, redis: ArqRedis
) -> None:
    """Its feed holds ``queue_size`` events and drops the oldest; the reader and the other
    subscribers go on (a burst larger than ``queue_size`` would be cut for anyone)."""
    hub = NotificationFanout(redis, settings, queue_size=3)
    try:
        sockets = object(), object()
        slow = hub.open("operator", sockets[0])
        other = hub.open("operator", sockets[1])
        await active(hub, 2)
        taken = []
        for number in range(1, 6):  # ``other`` keeps up, ``slow`` reads nothing
            await redis.publish(
                PUBSUB_CHANNEL, json.dumps({"notification_id": number, "account_id": 1})
            )
            taken.append((await asyncio.wait_for(anext(other), 5)).notification_id)

        async def dropped() -> bool:
            return slow.dropped == 2

        await wait_for(dropped)
        kept = [(await asyncio.wait_for(anext(slow), 5)).notification_id for _ in range(3)]
    finally:
        await hub.close()

    assert taken == [1, 2, 3, 4, 5]
    assert kept == [3, 4, 5]
    assert hub.active == 2 and [event async for event in slow] == []  # ended by close()
    slow.close()
    other.close()
    assert hub.active == 0


def test_finding5_the_limits_are_settings() -> None:
    assert Settings().max_subscriptions_per_principal == 20
    assert Settings().max_subscriptions_per_connection == 10
    found = Settings(
        ACCOUNTGRAPH_MAX_SUBSCRIPTIONS_PER_PRINCIPAL=5,
        ACCOUNTGRAPH_MAX_SUBSCRIPTIONS_PER_CONNECTION=2,
    )
    assert (found.max_subscriptions_per_principal, found.max_subscriptions_per_connection) == (5, 2)
