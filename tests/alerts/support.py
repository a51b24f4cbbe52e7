"""Shared pieces of the alert tests (A1-A5): GraphQL texts, builders through the API, a
drain of the outbox with a real arq worker on any Redis, snapshots of the alert tables,
a local HTTP receiver (webhooks, SMS gateway) and a graphql-transport-ws client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import websockets
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.typing import Subprotocol

from accountgraph import outbox
from accountgraph.alerts.service import PUBSUB_CHANNEL
from accountgraph.config import Settings
from tests.helpers import OPERATOR_TOKEN, Api
from workers.settings import build_worker

ERRORS = "userErrors { code field message }"
SET_ALERTS = f"""mutation($input: SetQuotaAlertsInput!) {{ setQuotaAlerts(input: $input) {{
  accounts {{ id quotaAlert {{ threshold enabled armed lastFiredAt }} }} {ERRORS} }} }}"""
SET_CHANNELS = f"""mutation($input: SetNotificationChannelsInput!) {{
  setNotificationChannels(input: $input) {{
    account {{ id channels {{ email phone webhookUrl }} }} {ERRORS} }} }}"""
PAY = f"""mutation($input: RecordPaymentInput!) {{ recordPayment(input: $input) {{
  account {{ finance {{ availableQuota }} }} {ERRORS} }} }}"""
CHARGE = f"""mutation($input: RecordChargeInput!) {{ recordCharge(input: $input) {{
  charge {{ id }} account {{ finance {{ availableQuota }} }} {ERRORS} }} }}"""
ADJUST = f"""mutation($input: AdjustBalanceInput!) {{ adjustBalance(input: $input) {{
  account {{ finance {{ availableQuota }} }} {ERRORS} }} }}"""
ALERT = """query($id: ID!) { account(id: $id) {
  id finance { availableQuota } quotaAlert { threshold enabled armed lastFiredAt }
  channels { email phone webhookUrl }
  notifications { totalCount edges { node { id kind availableQuota threshold createdAt
    account { id } deliveries { channel status attempts lastError } } } } } }"""
SUBSCRIBE = """subscription($id: ID) { notifications(accountId: $id) {
  id kind availableQuota threshold account { id name } } }"""


# ---------------------------------------------------------------- builders (through the API)


async def pay(api: Api, account: str, amount: str) -> None:
    await api.ok("recordPayment", PAY, {"accountId": account, "amount": amount})


async def charge(api: Api, account: str, amount: str, description: str = "usage") -> str:
    payload = await api.ok(
        "recordCharge", CHARGE, {"accountId": account, "amount": amount, "description": description}
    )
    quota: str = payload["account"]["finance"]["availableQuota"]
    return quota


async def set_alert(
    api: Api, accounts: list[str], threshold: str, enabled: bool = True, token: str = OPERATOR_TOKEN
) -> dict[str, Any]:
    return await api.mutate(
        "setQuotaAlerts",
        SET_ALERTS,
        {"accountIds": accounts, "threshold": threshold, "enabled": enabled},
        token,
    )


async def watched(
    api: Api,
    name: str,
    *,
    cash: str = "100.00",
    threshold: str = "50.00",
    email: str | None = None,
    webhook_url: str | None = None,
    phone: str | None = None,
) -> str:
    """A standalone account with ``cash``, an enabled alert at ``threshold`` (armed) and
    the channels given."""
    account = await api.account(name)
    if cash != "0.00":
        await pay(api, account, cash)
    payload = await set_alert(api, [account], threshold)
    assert payload["userErrors"] == [], payload
    if email or webhook_url or phone:
        await api.ok(
            "setNotificationChannels",
            SET_CHANNELS,
            {"accountId": account, "email": email, "webhookUrl": webhook_url, "phone": phone},
        )
    return account


async def alert_view(api: Api, account: str, token: str = OPERATOR_TOKEN) -> dict[str, Any]:
    found: dict[str, Any] = (await api.gql(ALERT, {"id": account}, token))["account"]
    return found


async def kinds(api: Api, account: str) -> list[str]:
    """The account's notification kinds, oldest first."""
    view = await alert_view(api, account)
    return [edge["node"]["kind"] for edge in reversed(view["notifications"]["edges"])]


# ---------------------------------------------------------------- the database


async def fetch(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


ALERT_TABLES = {
    "quota_alerts": "SELECT account_id, threshold, enabled, armed, crossings, last_fired_at "
    "FROM quota_alerts ORDER BY account_id",
    "notification_channels": "SELECT * FROM notification_channels ORDER BY account_id",
    "notifications": "SELECT id, account_id, kind, available_quota, threshold, dedupe_key "
    "FROM notifications ORDER BY id",
    "deliveries": "SELECT notification_id, channel, target, status, attempts, last_error "
    "FROM deliveries ORDER BY notification_id, channel",
}


async def snapshot(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the alert tables, to show that a refused mutation changed nothing."""
    return {
        name: [tuple(row) for row in await fetch(engine, sql)] for name, sql in ALERT_TABLES.items()
    }


async def drain(settings: Settings, engine: AsyncEngine, redis: ArqRedis) -> None:
    """The ``run_jobs`` fixture for any Redis and settings: relay every committed outbox
    row and run the jobs with a real arq worker in burst mode until nothing is left (jobs
    write rows of their own: deliveries, publishing, retries after their backoff)."""
    for _ in range(50):
        relayed = 0
        while sent := await outbox.relay_once(engine, redis, resend_after_s=60):
            relayed += sent
        if not relayed:
            if not await scalar(engine, "SELECT count(*) FROM outbox WHERE done_at IS NULL"):
                return
            await asyncio.sleep(0.05)  # a retry waits for its backoff
            continue
        await build_worker(settings, engine, redis, burst=True, relay=False).main()
    raise AssertionError("jobs kept making jobs for 50 rounds")


async def wait_for(condition: Any, timeout_s: float = 15.0, poll_s: float = 0.05) -> None:
    """Poll ``await condition()`` until it is true (a background worker's progress)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {condition}")
        await asyncio.sleep(poll_s)


# ---------------------------------------------------------------- a local HTTP receiver


class Stall:
    """Holds a receiver's answer for up to ``delay_s`` (a send in flight) until released;
    thread-safe, for servers that run their own event loop in a thread (aiosmtpd)."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self._released = threading.Event()

    def hold(self, delay_s: float) -> None:
        self._released.clear()
        self.delay_s = delay_s

    def release(self) -> None:
        self.delay_s = 0.0
        self._released.set()

    async def wait(self) -> None:
        if self.delay_s:
            await asyncio.to_thread(self._released.wait, self.delay_s)


@dataclass
class Receiver:
    """Records every POST (headers, body) as it arrives; answers ``status``, held back
    while ``stall`` holds."""

    status: int = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    stall: Stall = field(default_factory=Stall)
    url: str = ""

    async def endpoint(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), await request.body()))
        await self.stall.wait()
        return Response(status_code=self.status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.endpoint, methods=["POST"])])


# ---------------------------------------------------------------- a graphql-transport-ws client

WS_PROTOCOL = "graphql-transport-ws"


def ws_url(api: Api) -> str:
    return str(api.client.base_url).replace("http://", "ws://") + "/graphql"


@dataclass
class Subscription:
    socket: Any

    async def next(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """The next ``next`` message's payload (anything else fails the test)."""
        message = json.loads(await asyncio.wait_for(self.socket.recv(), timeout_s))
        assert message["type"] == "next", message
        payload: dict[str, Any] = message["payload"]
        return payload

    async def nothing(self, timeout_s: float = 1.0) -> None:
        """No message arrives within ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            message = await asyncio.wait_for(self.socket.recv(), timeout_s)
            raise AssertionError(f"expected nothing, got {message}")


async def subscribers(redis: ArqRedis) -> int:
    found = dict(await redis.pubsub_numsub(PUBSUB_CHANNEL))
    count: int = found.get(PUBSUB_CHANNEL.encode(), found.get(PUBSUB_CHANNEL, 0))
    return count


@contextlib.asynccontextmanager
async def subscribed(
    api: Api, redis: ArqRedis, token: str, account: str | None
) -> AsyncIterator[Subscription]:
    """A real WebSocket client subscribed to ``notifications(accountId)``; yields once the
    gateway has read the subscribe message (a ping sent after it is answered) and its
    one shared listener (alerts/fanout.py) is subscribed on Redis pub/sub, so nothing
    published afterwards can be missed. (The listener stays subscribed between tests: the
    count on the channel no longer grows with each subscription.)"""
    async with websockets.connect(ws_url(api), subprotocols=[Subprotocol(WS_PROTOCOL)]) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "connection_ack"
        await socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": {"id": account}},
                }
            )
        )
        await socket.send(json.dumps({"type": "ping"}))
        answer = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert answer["type"] == "pong", answer

        async def listening() -> bool:
            return await subscribers(redis) > 0

        await wait_for(listening)
        yield Subscription(socket)
