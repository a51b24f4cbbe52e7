"""The charge client, in its own process: ``recordCharge`` on a fixed schedule, and
(optionally) one graphql-transport-ws subscription to ``notifications`` that stamps each
event with its arrival time.

Reads a JSON spec on stdin, prints a JSON result on stdout:

    spec = {"urls": ["http://127.0.0.1:8000", ...], "token": "operator token",
            "amount": "60.00", "connections": 64, "subscribe": true,
            "redis_url": "redis://...", "channel": "accountgraph:notifications",
            "event_timeout": 60.0,
            "phases": [{"rate": 200.0, "accounts": ["QWNjb3VudDox", ...]}, ...]}

Each phase POSTs one charge per account, the n-th at ``start + n / rate`` (open loop: a
slow answer does not delay the next charge; at most ``connections`` are in flight, the
rest wait in the client, and that wait is measured). Charges go to the ``urls`` in turn.
After the last POST of a phase the client waits until every account of the phase has had
its event (or ``event_timeout``), then 0.3 s more for late duplicates. The subscription
goes to the first URL; with ``redis_url`` the client waits until a gateway listens on
``channel`` before the first phase. Events are attributed to the phase of their account,
so a late one still counts where it belongs.

Per phase the result has, per account (in the order given): ``scheduled``, ``sent`` (the
POST went out on a connection), ``answered`` (its response; ``null`` if it failed) and
``received`` (the first event; ``null`` if none), all in seconds on this process's clock;
plus ``errors`` by kind, ``duplicates`` (events beyond the first per account) and
``strays`` (events for accounts of no phase).

    .venv/bin/python -m bench.charge_client < spec.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets
from websockets.typing import Subprotocol

CHARGE = """
mutation Charge($input: RecordChargeInput!) {
  recordCharge(input: $input) { charge { id } userErrors { code message } }
}
"""
SUBSCRIBE = "subscription { notifications { id kind account { id } } }"


class Phase:
    def __init__(self, rate: float, accounts: list[str]) -> None:
        self.rate = rate
        self.accounts = accounts
        n = len(accounts)
        self.scheduled: list[float | None] = [None] * n
        self.sent: list[float | None] = [None] * n
        self.answered: list[float | None] = [None] * n
        self.received: list[float | None] = [None] * n
        self.errors: Counter[str] = Counter()
        self.duplicates = 0
        self.waiting = n
        self.complete = asyncio.Event()
        if n == 0:
            self.complete.set()

    def result(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "accounts": self.accounts,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "answered": self.answered,
            "received": self.received,
            "errors": dict(self.errors),
            "duplicates": self.duplicates,
        }


async def listen(socket: Any, where: dict[str, tuple[Phase, int]], strays: list[int]) -> None:
    async for raw in socket:
        now = time.perf_counter()
        message = json.loads(raw)
        if message.get("type") != "next":
            raise RuntimeError(f"unexpected message {message}")
        account = message["payload"]["data"]["notifications"]["account"]["id"]
        found = where.get(account)
        if found is None:
            strays[0] += 1
            continue
        phase, index = found
        if phase.received[index] is not None:
            phase.duplicates += 1
            continue
        phase.received[index] = now
        phase.waiting -= 1
        if phase.waiting == 0:
            phase.complete.set()


@contextlib.asynccontextmanager
async def subscribed(
    spec: dict[str, Any], where: dict[str, tuple[Phase, int]], strays: list[int]
) -> AsyncIterator[asyncio.Task[None]]:
    url = spec["urls"][0].replace("http://", "ws://") + "/graphql"
    protocols = [Subprotocol("graphql-transport-ws")]
    async with websockets.connect(url, subprotocols=protocols, max_size=None) as socket:
        await socket.send(
            json.dumps(
                {"type": "connection_init", "payload": {"Authorization": f"Bearer {spec['token']}"}}
            )
        )
        ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no ack: {ack}")
        await socket.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}})
        )
        if spec.get("redis_url"):
            await wait_for_pubsub(spec["redis_url"], spec["channel"])
        task = asyncio.create_task(listen(socket, where, strays))
        try:
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task


async def wait_for_pubsub(redis_url: str, channel: str) -> None:
    """Until a gateway listens on the notifications channel (the hub subscribes with the
    first subscription)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        for _ in range(200):
            counts = dict(await redis.pubsub_numsub(channel))
            if any(counts.values()):
                return
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    raise RuntimeError("the subscription never reached Redis")


async def drive(http: httpx.AsyncClient, spec: dict[str, Any], phase: Phase) -> None:
    urls = [f"{base}/graphql" for base in spec["urls"]]
    headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": "application/json"}
    slots = asyncio.Semaphore(int(spec.get("connections", 64)))

    async def one(index: int, account: str) -> None:
        body = json.dumps(
            {
                "query": CHARGE,
                "variables": {
                    "input": {
                        "accountId": account,
                        "amount": spec.get("amount", "60.00"),
                        "description": "bench",
                    }
                },
            }
        ).encode()
        async with slots:
            phase.sent[index] = time.perf_counter()
            try:
                response = await http.post(urls[index % len(urls)], content=body, headers=headers)
            except httpx.HTTPError as error:
                phase.errors[type(error).__name__] += 1
                return
            answered = time.perf_counter()
        if response.status_code != 200:
            phase.errors[f"HTTP {response.status_code}"] += 1
            return
        answer = json.loads(response.content)
        if answer.get("errors"):
            phase.errors["GraphQL errors"] += 1
            return
        if answer["data"]["recordCharge"]["userErrors"]:
            phase.errors["user errors"] += 1
            return
        phase.answered[index] = answered

    started = time.perf_counter()
    tasks = []
    for index, account in enumerate(phase.accounts):
        due = started + index / phase.rate
        phase.scheduled[index] = due
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, account)))
    await asyncio.gather(*tasks)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    phases = [Phase(float(p["rate"]), list(p["accounts"])) for p in spec["phases"]]
    where = {account: (phase, i) for phase in phases for i, account in enumerate(phase.accounts)}
    strays = [0]
    connections = int(spec.get("connections", 64))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=120, trust_env=False, limits=limits)
        )
        listener = None
        if spec.get("subscribe", True):
            listener = await stack.enter_async_context(subscribed(spec, where, strays))
        for phase in phases:
            await drive(http, spec, phase)
            if listener is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(phase.complete.wait()), float(spec.get("event_timeout", 60))
                    )
                await asyncio.sleep(0.3)  # a late duplicate would show here
                if listener.done():
                    listener.result()  # the socket failed: say why
    return {"phases": [phase.result() for phase in phases], "strays": strays[0]}


def main() -> int:
    spec = json.loads(sys.stdin.read())
    result = asyncio.run(run(spec))
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
